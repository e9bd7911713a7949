"""Property tests: the spectral op stays finite and shape/dtype-true on any map and any legal setting."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.defense.asvp import amplify
from app.defense.setting import MAX_A, Setting


maps = st.sampled_from(["zeros", "constant", "rank1", "random"])
magnitudes = st.sampled_from([1e-30, 1e-6, 1.0, 1e6, 1e30])
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


def make_map(kind: str, scale: float, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "zeros":
        return torch.zeros(1, c, h, w)
    if kind == "constant":
        return torch.full((1, c, h, w), scale)
    if kind == "rank1":
        return scale * torch.randn(c, 1, 1, generator=g) * torch.randn(1, h, 1, generator=g) * torch.randn(1, 1, w, generator=g)[None]
    return scale * torch.randn(1, c, h, w, generator=g)


@settings(max_examples=60, deadline=None)
@given(kind=maps, scale=magnitudes, dtype=dtypes, layout=st.sampled_from(["channel", "spatial"]),
       k=st.integers(0, 40), a=st.floats(0.01, MAX_A), tau=st.one_of(st.none(), st.floats(0.05, 1.0)),
       c=st.integers(1, 12), h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 3),
       directions=st.sampled_from(["top", "bottom", "random"]))
def test_output_is_finite_and_keeps_shape_and_dtype(kind, scale, dtype, layout, k, a, tau, c, h, w, seed, directions):
    feat = make_map(kind, scale, c, h, w, seed)
    if dtype != torch.float32:
        feat = feat.clamp(-6e4, 6e4)  # inputs must be representable in the half type to begin with
    feat = feat.to(dtype)
    out = amplify(feat, Setting(k=k, a=a, layout=layout, tau=tau, directions=directions))
    assert out.shape == feat.shape and out.dtype == feat.dtype
    limit = torch.finfo(dtype).max
    finite_in = feat.float().abs().max() * MAX_A < limit  # an amplified output can only overflow its type
    if finite_in:
        assert torch.isfinite(out).all()
    if kind == "zeros":
        assert torch.equal(out, feat)
