"""The spectral op against its full-SVD reference, its identities and edge cases, and hooks that
leave no trace on the model."""
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.defense.asvp import FeatureRecord, amplify, defend, reference_amplify, spectrum
from app.defense.setting import Setting
from app.teachers.layers import hookable_layers
from app.teachers.networks import UNetTeacher


BUDGET = {"channel": 1e-4, "spatial": 1e-3}  # docs/protocol.md section 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batched ops: a second thread only adds synchronisation (and stalls on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300)).item()


def smooth_maps(b=2, c=8, h=24, w=20, seed=0, blur=7):
    """Feature-like maps: low-pass noise has a decaying spectrum, like real activations."""
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(b, c, h + blur - 1, w + blur - 1, generator=g), blur, stride=1)


def with_spectrum(s, n=None, seed=0):
    """An n x n matrix with singular values s (zeros after them) and random singular vectors."""
    n = n or len(s)
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    full = torch.zeros(n, dtype=torch.float64)
    full[: len(s)] = torch.as_tensor(s, dtype=torch.float64)
    return (u * full) @ v.T


# ---- the op against the reference ------------------------------------------------------------

@pytest.mark.parametrize("layout", ["channel", "spatial"])
@pytest.mark.parametrize("k,a", [(1, 1.5), (3, 0.5), (4, 3.0), (2, 100.0)])
def test_fast_op_matches_full_svd(layout, k, a):
    f = smooth_maps(h=48, w=40)  # wide enough for the spatial op's iterative path (2 (k + 8) <= 40)
    cfg = Setting(k=k, a=a, layout=layout)
    assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < BUDGET[layout]


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_white_noise_the_flattest_spectrum(layout):
    f = torch.randn(1, 16, 48, 48, generator=torch.Generator().manual_seed(1))
    cfg = Setting(k=2, a=3.0, layout=layout)  # spatial: slow convergence, most maps redone exactly
    assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < BUDGET[layout]


def test_feature_like_maps_take_the_fast_spatial_path(monkeypatch):
    import app.defense.asvp

    def refuse(g):
        raise AssertionError("fell back to the exact eigendecomposition")

    monkeypatch.setattr(app.defense.asvp, "_exact", refuse)
    f = smooth_maps(b=1, c=16, h=64, w=64, blur=9)
    for k, a in ((1, 1.5), (4, 3.0)):
        cfg = Setting(k=k, a=a, layout="spatial")
        assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < 1e-4


def test_spatial_flat_top_falls_back_to_the_exact_path():
    s = torch.cat([torch.linspace(10, 9.5, 24), torch.linspace(3, 1, 16)])
    f = torch.stack([with_spectrum(s, n=40, seed=i) for i in range(4)]).float()[None]
    cfg = Setting(k=2, a=3.0, layout="spatial")  # s_3 / s_2 ~ 0.999: no subspace iteration converges
    assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < BUDGET["spatial"]


def test_directions_below_the_numerical_rank_are_left_alone():
    s = torch.tensor([1.0, 0.5, 1e-5], dtype=torch.float64)  # 1e-5: below float32's resolution here
    f = with_spectrum(s, n=3).reshape(1, 3, 3, 1).float()
    out = amplify(f, Setting(k=3, a=3.0)).double().reshape(3, 3)
    torch.testing.assert_close(torch.linalg.svdvals(out), torch.tensor([3.0, 1.5, 1e-5], dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)


def test_spatial_near_tie_at_k():
    maps = torch.stack([with_spectrum([10, 6, 5.9, 5.8, 3, 2, 1], n=40, seed=i) for i in range(6)])
    f = maps.float().reshape(2, 3, 40, 40)
    cfg = Setting(k=2, a=4.0, layout="spatial")  # s_2 and s_3 within 2 %
    assert rel_err(amplify(f, cfg), reference_amplify(f, cfg)) < BUDGET["spatial"]


@pytest.mark.parametrize("layout", ["channel", "spatial"])
@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (2, 16, 3, 3), (1, 4, 40, 24)])
def test_any_shape_and_batch(layout, shape):
    f = torch.randn(*shape, generator=torch.Generator().manual_seed(2)).relu()  # C > HW, H > W too
    cfg = Setting(k=2, a=2.5, layout=layout)
    out = amplify(f, cfg)
    assert out.shape == f.shape
    assert rel_err(out, reference_amplify(f, cfg)) < BUDGET[layout]


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_degenerate_maps(layout):
    cfg = Setting(k=50, a=3.0, layout=layout)  # k far beyond every rank here: clamped
    zeros = torch.zeros(2, 4, 8, 8)
    assert torch.equal(amplify(zeros, cfg), zeros)
    u, v = torch.arange(1.0, 5.0), torch.linspace(-1, 1, 64)
    rank1 = (u[:, None] * v).reshape(1, 4, 8, 8) if layout == "channel" else \
        torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8)).expand(1, 4, 8, 8).contiguous()
    torch.testing.assert_close(amplify(rank1, cfg), 3 * rank1, rtol=1e-5, atol=1e-5)  # rank 1: just tripled
    const = torch.full((1, 4, 8, 8), 0.7)
    torch.testing.assert_close(amplify(const, cfg), 3 * const)  # a constant map has rank 1 too
    mixed = smooth_maps(b=1, c=4, h=48, w=48)
    mixed[0, 1] = 0  # a dead channel among live ones
    cfg = Setting(k=2, a=3.0, layout=layout)
    out = amplify(mixed, cfg)
    assert torch.isfinite(out).all() and rel_err(out, reference_amplify(mixed, cfg)) < BUDGET[layout]
    if layout == "spatial":
        assert torch.equal(out[0, 1], mixed[0, 1])


@pytest.mark.parametrize("layout", ["channel", "spatial"])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-12, 1e12, 1e30])
def test_huge_and_tiny_features(layout, magnitude):
    f = smooth_maps(h=48, w=40)
    cfg = Setting(k=2, a=3.0, layout=layout)
    out = amplify(f * magnitude, cfg)  # squares of these under- or overflow float32
    assert torch.isfinite(out).all()
    assert rel_err(out / magnitude, reference_amplify(f, cfg)) < BUDGET[layout]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_other_dtypes_in_and_out(dtype, layout):
    f = smooth_maps(h=48, w=40).to(dtype)
    cfg = Setting(k=2, a=2.0, layout=layout)
    out = amplify(f, cfg)
    assert out.dtype == dtype and torch.isfinite(out).all()
    tol = 1e-7 if dtype == torch.float64 and layout == "channel" else BUDGET[layout]
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else tol  # half precision's own rounding
    assert rel_err(out, reference_amplify(f.double(), cfg)) < tol


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_identity_is_bit_exact(layout):
    f = smooth_maps()
    assert amplify(f, Setting(k=5, a=1.0, layout=layout)) is f
    assert amplify(f, Setting(k=0, a=4.0, layout=layout)) is f
    assert torch.equal(amplify(f, Setting(k=5, a=1.0, layout=layout)), f.clone())


@pytest.mark.parametrize("layout,n", [("channel", 4), ("spatial", 40)])
def test_adaptive_k_reaches_the_energy_share(layout, n):
    s = torch.tensor([10.0, 5.0, 1.0, 0.5], dtype=torch.float64)  # energy shares .79, .99, .998, 1
    m = with_spectrum(s, n=n)
    f = (m.reshape(1, 4, 2, 2) if layout == "channel" else m[None, None]).float()
    for tau, k_cap, k in ((0.5, 4, 1), (0.9, 4, 2), (0.995, 4, 3), (1.0, 4, 4), (0.995, 2, 2)):
        out = amplify(f, Setting(k=k_cap, a=2.0, tau=tau, layout=layout)).double().reshape(n, n)
        expect = torch.zeros(n, dtype=torch.float64)
        expect[:4] = s
        expect[:k] *= 2
        torch.testing.assert_close(torch.linalg.svdvals(out), expect, rtol=1e-4, atol=1e-4)


# ---- the baselines --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_baseline_directions_differ_and_are_seeded(layout):
    f = smooth_maps(h=48, w=40)
    top = amplify(f, Setting(k=2, a=3.0, layout=layout))
    bottom_cfg = Setting(k=2, a=3.0, layout=layout, directions="bottom")
    bottom = amplify(f, bottom_cfg)
    assert rel_err(bottom, reference_amplify(f, bottom_cfg)) < 1e-3
    rand = amplify(f, Setting(k=2, a=3.0, layout=layout, directions="random", seed=4))
    assert rel_err(bottom, top) > 1e-2 and rel_err(rand, top) > 1e-2 and rel_err(rand, f) > 1e-3
    assert torch.equal(rand, amplify(f, Setting(k=2, a=3.0, layout=layout, directions="random", seed=4)))
    assert not torch.equal(rand, amplify(f, Setting(k=2, a=3.0, layout=layout, directions="random", seed=5)))


def test_bottom_amplifies_the_smallest_nonzero_directions():
    s = torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)
    f = with_spectrum(s, n=6).reshape(1, 6, 2, 3).float()  # rank 4 of 6: two zero directions
    out = amplify(f, Setting(k=2, a=3.0, directions="bottom")).double().reshape(6, 6)
    torch.testing.assert_close(torch.linalg.svdvals(out)[:4], torch.tensor([8.0, 6.0, 4.0, 3.0], dtype=torch.float64),
                               rtol=1e-4, atol=1e-4)


# ---- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(k=-1), dict(k=1.5), dict(k=True), dict(a=0.0), dict(a=-2.0),
                                 dict(a=float("nan")), dict(a=float("inf")), dict(a=1e6), dict(tau=0.0),
                                 dict(tau=1.5), dict(layout="diag"), dict(placement="x"),
                                 dict(directions="left"), dict(layers=()), dict(layers=("",))])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if next(iter(bad)) != "layers" else "layer"):
        Setting(**bad)


def test_edge_settings_are_accepted():
    assert Setting(k=0, a=100.0, tau=1.0).is_identity
    assert Setting(layers="dec1").layers == ("dec1",)


# ---- hooks -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return UNetTeacher(width=8).eval()


def no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


@torch.no_grad()
def test_hooks_leave_no_trace(teacher):
    x = torch.rand(1, 3, 32, 32)
    before = teacher(x)
    with defend(teacher, Setting(k=2, a=4.0, layers=("enc2", "dec1"))):
        during = teacher(x)
    assert not torch.equal(before, during)  # inline: the served output changes
    assert torch.equal(teacher(x), before) and no_hooks(teacher)
    with pytest.raises(RuntimeError, match="boom"), defend(teacher, Setting(k=2, a=4.0, layers=("dec1",))):
        raise RuntimeError("boom")
    assert torch.equal(teacher(x), before) and no_hooks(teacher)


@torch.no_grad()
@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_exposed_placement_serves_clean_output_but_hands_out_perturbed_features(teacher, layout):
    x = torch.rand(2, 3, 32, 32)
    before = teacher(x)
    record = FeatureRecord()
    with defend(teacher, Setting(k=1, a=4.0, layers=("dec1",), layout=layout, placement="exposed"), record):
        served = teacher(x)
    assert torch.equal(served, before) and no_hooks(teacher)
    clean, exposed = record.clean["dec1"], record.exposed["dec1"]
    assert clean.shape == exposed.shape == (2, 8, 32, 32) and not torch.equal(exposed, clean)
    before_s, after_s = record.spectra["dec1"]
    assert len(before_s) <= 32 and after_s[0] == pytest.approx(4 * before_s[0], rel=1e-3)


@torch.no_grad()
def test_inline_record_keeps_the_perturbed_feature_that_flowed_on(teacher):
    x = torch.rand(1, 3, 32, 32)
    record = FeatureRecord()
    cfg = Setting(k=1, a=3.0, layers=("mid",))
    with defend(teacher, cfg, record):
        teacher(x)
    torch.testing.assert_close(record.exposed["mid"], amplify(record.clean["mid"], cfg))


@torch.no_grad()
def test_recording_an_undefended_teacher(teacher):
    x = torch.rand(1, 3, 32, 32)
    before = teacher(x)
    record = FeatureRecord()
    with defend(teacher, Setting(k=2, a=1.0, layers=("enc1", "mid")), record):
        assert torch.equal(teacher(x), before)
    assert set(record.exposed) == {"enc1", "mid"}
    assert torch.equal(record.exposed["mid"], record.clean["mid"])
    assert record.clean["mid"].shape == (1, 32, 8, 8)


def test_any_module_and_clear_errors(teacher):
    with pytest.raises(ValueError, match="unknown layer 'nope': the model has no such submodule.*enc1.*dec1"):
        with defend(teacher, Setting(layers=("nope",))):
            pass
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Flatten(), nn.Identity())
    x = torch.rand(1, 3, 8, 8)
    clean = net(x)
    with torch.no_grad(), defend(net, Setting(k=1, a=3.0, layers=("0",))):
        assert not torch.equal(net(x), clean)  # hooks on a plain Sequential work
    with pytest.raises(ValueError, match="layer '1'.*B x C x H x W"), defend(net, Setting(layers=("1",))):
        net(x)
    assert no_hooks(net)


@torch.no_grad()
def test_records_survive_in_place_ops_downstream():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
    record = FeatureRecord()
    with defend(net, Setting(k=1, a=2.0, layers=("0",), placement="exposed"), record):
        net(torch.randn(1, 3, 8, 8))
    assert (record.clean["0"] < 0).any() and (record.exposed["0"] < 0).any()


def test_spectrum_of_the_first_image():
    s = [6.0, 3.0, 1.0]
    f = torch.stack([with_spectrum(s, n=3).reshape(3, 3, 1), torch.zeros(3, 3, 1, dtype=torch.float64)]).float()
    torch.testing.assert_close(torch.as_tensor(spectrum(f, "channel")), torch.tensor(s), rtol=1e-4, atol=1e-4)
    assert math.isclose(float(spectrum(f * 0, "spatial")[0]), 0.0)



# ---- where the defense can hook --------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 2])
def test_hookable_layers_are_the_feature_maps_in_forward_order(scale):
    torch.manual_seed(0)
    net = UNetTeacher(width=8, scale=scale).eval()
    layers = {f.name: f for f in hookable_layers(net, torch.rand(1, 3, 12, 20))}
    names = list(layers)
    assert names.index("head") < names.index("enc2") < names.index("mid") < names.index("dec1") < names.index("tail")
    assert (layers["enc2"].channels, layers["enc2"].scale) == (16, Fraction(1, 2))
    assert (layers["mid"].channels, layers["mid"].scale) == (32, Fraction(1, 4))
    assert layers["tail"].scale == scale
    assert not [n for n in names if n.endswith(("fc1", "fc2"))]  # channel-attention gates are C x 1 x 1
    assert all(not m._forward_hooks for m in net.modules())


def test_attention_matrices_and_tokens_are_not_feature_maps():
    class Attention(nn.Module):
        """A window-attention step: square (1 x windows x N x N) scores, then tokens."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 4, 3, padding=1)
            self.softmax = nn.Softmax(-1)
            self.tokens = nn.Flatten(2)

        def forward(self, x):
            f = self.embed(x)
            windows = f.unfold(2, 4, 4).unfold(3, 4, 4).reshape(-1, 4, 16)  # (B * windows) x C x 16
            self.softmax((windows.mT @ windows)[None])  # 4-D, batch 1, but square: not a feature map
            return self.tokens(f)

    layers = hookable_layers(Attention(), torch.rand(1, 3, 8, 12))
    assert [f.name for f in layers] == ["embed"]
    with pytest.raises(ValueError, match="not be square"):
        hookable_layers(Attention(), torch.rand(1, 3, 8, 8))
