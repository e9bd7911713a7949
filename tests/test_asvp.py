"""The spectral op against its SVD reference, identities, and hooks that leave no trace."""
import pytest
import torch
import torch.nn.functional as F

from app.asvp import ASVPConfig, FeatureRecord, amplify, defend, reference_amplify
from app.nets import UNetTeacher


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300)).item()


def smooth_maps(b=2, c=8, h=24, w=20, seed=0):
    """Feature-like maps: low-pass noise has a decaying spectrum, like real activations."""
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(b, c, h + 6, w + 6, generator=g), 7, stride=1)


@pytest.mark.parametrize("layout", ["channel", "spatial"])
@pytest.mark.parametrize("k,a", [(1, 3.0), (3, 0.5), (4, 2.0)])
def test_fast_op_matches_full_svd(layout, k, a):
    f = smooth_maps()
    cfg = ASVPConfig(k=k, a=a, layout=layout)
    assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < (1e-4 if layout == "channel" else 1e-3)


def test_channel_op_on_white_noise_and_spatial_fallback():
    f = torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    for layout in ("channel", "spatial"):  # a flat spectrum sends the spatial op to its exact path
        cfg = ASVPConfig(k=2, a=2.0, layout=layout)
        assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < 1e-4


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_degenerate_maps(layout):
    zeros = torch.zeros(1, 4, 8, 8)
    cfg = ASVPConfig(k=2, a=3.0, layout=layout)
    assert torch.equal(amplify(zeros, cfg), zeros)
    u, v = torch.arange(1.0, 5.0), torch.linspace(-1, 1, 64)
    rank1 = (u[:, None] * v[None, :]).reshape(1, 4, 8, 8) if layout == "channel" else \
        torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8)).expand(1, 4, 8, 8).contiguous()
    big_k = ASVPConfig(k=50, a=3.0, layout=layout)  # k > rank clamps: rank 1 means the map just triples
    torch.testing.assert_close(amplify(rank1, big_k), 3 * rank1, rtol=1e-5, atol=1e-5)
    const = torch.full((1, 4, 8, 8), 0.7)
    assert torch.isfinite(amplify(const, big_k)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_in_and_out(dtype):
    f = smooth_maps().to(dtype)
    cfg = ASVPConfig(k=2, a=2.0)
    out = amplify(f, cfg)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert rel_err(out, reference_amplify(f.float(), cfg)) < 1e-2  # half precision's own rounding


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_identity_is_bit_exact(layout):
    f = smooth_maps()
    assert amplify(f, ASVPConfig(k=5, a=1.0, layout=layout)) is f
    assert amplify(f, ASVPConfig(k=0, a=4.0, layout=layout)) is f


def test_adaptive_k_picks_the_energy_threshold():
    s = torch.tensor([10.0, 5.0, 1.0, 0.5])  # energy shares 0.79, 0.99, 0.998, 1.0
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    f = (q @ torch.diag(s) @ q.T).reshape(1, 4, 2, 2)
    for tau, k in ((0.5, 1), (0.9, 2), (0.995, 3)):
        out = amplify(f, ASVPConfig(k=4, a=2.0, tau=tau)).reshape(4, 4)
        expect = s.clone()
        expect[:k] *= 2
        torch.testing.assert_close(torch.linalg.svdvals(out), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(k=-1), dict(a=0.0), dict(a=float("nan")), dict(a=float("inf")),
                                 dict(a=1e6), dict(tau=1.5), dict(layout="diag"), dict(placement="x"), dict(layers=())])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ASVPConfig(**bad)


def test_baseline_directions_differ_and_are_seeded():
    f = smooth_maps()
    top = amplify(f, ASVPConfig(k=2, a=3.0))
    bottom = amplify(f, ASVPConfig(k=2, a=3.0, directions="bottom"))
    rand = amplify(f, ASVPConfig(k=2, a=3.0, directions="random", seed=4))
    assert rel_err(bottom, top) > 1e-2 and rel_err(rand, top) > 1e-2
    assert torch.equal(rand, amplify(f, ASVPConfig(k=2, a=3.0, directions="random", seed=4)))
    assert not torch.equal(rand, amplify(f, ASVPConfig(k=2, a=3.0, directions="random", seed=5)))


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return UNetTeacher(width=8).eval()


@torch.no_grad()
def test_hooks_leave_no_trace(teacher):
    x = torch.rand(1, 3, 32, 32)
    before = teacher(x)
    with defend(teacher, ASVPConfig(k=2, a=4.0, layers=("enc2", "dec1"))):
        during = teacher(x)
    assert not torch.equal(before, during)
    assert torch.equal(teacher(x), before)
    with pytest.raises(RuntimeError), defend(teacher, ASVPConfig(k=2, a=4.0, layers=("dec1",))):
        raise RuntimeError("boom")
    assert torch.equal(teacher(x), before)
    assert all(not m._forward_hooks for m in teacher.modules())


@torch.no_grad()
def test_exposed_placement_serves_clean_output_but_hands_out_perturbed_features(teacher):
    x = torch.rand(1, 3, 32, 32)
    before = teacher(x)
    record = FeatureRecord()
    with defend(teacher, ASVPConfig(k=2, a=4.0, layers=("dec1",), placement="exposed"), record):
        served = teacher(x)
    assert torch.equal(served, before)
    assert not torch.equal(record.exposed["dec1"], record.clean["dec1"])
    before_s, after_s = record.spectra["dec1"]
    assert after_s[0] > 3.9 * before_s[0]


def test_unknown_layer_lists_the_real_ones(teacher):
    with pytest.raises(ValueError, match="unknown layer 'nope'.*dec1"):
        with defend(teacher, ASVPConfig(layers=("nope",))):
            pass
