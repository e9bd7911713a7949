"""Attackers who know the defense: the ASVP-aware one puts an amplified top singular value back near the
clean map's, without knowing k or a; the affinity one matches which positions go together, blind to a
scale; both train through the attacker's registry and leave the recipe's attackers as they were."""
import dataclasses

import pytest
import torch
from helpers import SMALL_RUN

from app.attack.attackers import ATTACKERS, INFORMED, attack_for, attacker
from app.attack.distill import distill
from app.attack.informed import affinity, unamplified
from app.data.tasks import TASKS
from app.defense.asvp import reference_amplify
from app.defense.setting import Setting
from app.teachers.loader import load_teacher


def smooth_map(seed: int) -> torch.Tensor:
    """2 x 16 x 12 x 12 maps whose channel-layout spectra decay smoothly (10 * 0.8^i)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        u, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(144, 16, generator=g, dtype=torch.float64))
        out.append((u * (10 * 0.8 ** torch.arange(16.0, dtype=torch.float64))) @ v.T)
    return torch.stack(out).reshape(2, 16, 12, 12).float()


@pytest.mark.parametrize("k,a", [(1, 100.0), (2, 10.0), (1, 3.0)])
def test_the_asvp_aware_attacker_recovers_the_clean_singular_values(k, a):
    clean = smooth_map(k)
    amplified = reference_amplify(clean, Setting(layers=("x",), k=k, a=a))
    spectrum = lambda m: torch.linalg.svdvals(m.reshape(2, 16, 144).double())
    recovered, truth = spectrum(unamplified(amplified)), spectrum(clean)
    assert spectrum(amplified)[:, 0].min() > 2.5 * truth[:, 0].max()  # the defense did stand out
    torch.testing.assert_close(recovered, truth, rtol=0.15, atol=0)
    torch.testing.assert_close(unamplified(clean), clean, rtol=0, atol=1e-5)  # a clean map passes untouched


def test_affinity_ignores_the_scale_of_the_features_but_not_their_pattern():
    feat = torch.randn(2, 8, 20, 20, generator=torch.Generator().manual_seed(0))
    assert affinity(feat).shape == (2, 256, 256)
    torch.testing.assert_close(affinity(feat * 100), affinity(feat))
    assert not torch.allclose(affinity(feat.roll(3, dims=-1)), affinity(feat))


@pytest.mark.parametrize("name", list(INFORMED))
def test_an_informed_attacker_trains_from_the_registry_and_is_no_searched_one(name):
    attack = dataclasses.replace(attacker(attack_for("dehaze"), name), **SMALL_RUN)
    assert attack.label == name and name not in ATTACKERS
    exposed = Setting(layers=("dec1",), k=1, a=100.0, placement="exposed")
    *_, last = distill(load_teacher("dehaze").model, TASKS["dehaze"], [(exposed, 0)], attack, every=attack.steps)
    assert torch.isfinite(torch.tensor(last.feature_losses)).all() and last.feature_losses[0] > 0
