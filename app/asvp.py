"""ASVP: amplify the top-k singular values of hooked feature maps by a factor a.

Both layouts reduce to one update on a matrix M with orthonormal directions Q (k columns):
    M' = M + (a - 1) Q Q^T M,
which scales exactly the singular values along Q when Q holds singular vectors of M.
- `channel`: M = F.reshape(C, H*W) per image; since C << HW, Q comes exactly from eigh of the
  C x C Gram M M^T in float64.
- `spatial`: M = each channel's H x W map; only the top few directions are needed, so Q comes
  from a seeded subspace iteration (Rayleigh-Ritz) rather than a full SVD.
`directions` swaps Q for the bottom-k or a random k-dim subspace: the baselines that say whether
the *top* singular directions matter.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

LAYOUTS = ("channel", "spatial")
PLACEMENTS = ("inline", "exposed")
DIRECTIONS = ("top", "bottom", "random")
MAX_A = 100.0
MAX_K = 512
SPECTRUM_LEN = 32
SUBSPACE_ITERS = 6
OVERSAMPLE = 4
RITZ_TOL = 1e-5  # residual of a top-k Ritz pair, relative to s_1^2


@dataclass(frozen=True)
class ASVPConfig:
    """One defense setting.

    With `tau` set, k is adaptive per matrix: the smallest k whose singular values hold a share
    `tau` of the energy sum(s_i^2), capped by `k`. k = 0 or a = 1 leaves features untouched.
    """

    k: int = 1
    a: float = 1.5
    layout: str = "channel"
    tau: float | None = None
    placement: str = "inline"
    layers: tuple[str, ...] = ("mid",)
    directions: str = "top"
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 0 <= self.k <= MAX_K:
            raise ValueError(f"k must be a whole number in 0..{MAX_K}, got {self.k!r}")
        if not isinstance(self.a, (int, float)) or not math.isfinite(self.a) or not 0 < self.a <= MAX_A:
            raise ValueError(f"a must be a finite number in (0, {MAX_A:g}], got {self.a!r}")
        if self.tau is not None and not (isinstance(self.tau, (int, float)) and 0 < self.tau <= 1):
            raise ValueError(f"tau must be in (0, 1], got {self.tau!r}")
        for name, value, allowed in (("layout", self.layout, LAYOUTS), ("placement", self.placement, PLACEMENTS),
                                     ("directions", self.directions, DIRECTIONS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if not self.layers or not all(isinstance(n, str) and n for n in self.layers):
            raise ValueError("name at least one layer to hook")

    @property
    def is_identity(self) -> bool:
        return self.k == 0 or self.a == 1


def _matrices(feat: torch.Tensor, layout: str) -> torch.Tensor:
    """B x C x H x W -> a batch of matrices: B x C x HW (channel) or BC x H x W (spatial)."""
    b, c, h, w = feat.shape
    return feat.reshape(b, c, h * w) if layout == "channel" else feat.reshape(b * c, h, w)


def _exact_directions(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All left singular vectors and values, largest first, from eigh of the Gram in float64.

    The Gram product itself runs in float32 on the max-normalised matrix (no overflow for huge
    values, no underflow for tiny ones); its eigendecomposition runs in float64.
    """
    scale = m.abs().amax(dim=(1, 2), keepdim=True).float().clamp(min=torch.finfo(torch.float32).tiny)
    unit = m.float() / scale
    gram = torch.stack([u @ u.T for u in unit]).double()  # 2-D matmuls beat bmm for wide matrices
    evals, evecs = torch.linalg.eigh(gram)
    return evecs.flip(-1), evals.flip(-1).clamp(min=0).sqrt() * scale.double().flatten(1)


def _top_directions(m: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top singular vectors and values by seeded subspace iteration with a Rayleigh-Ritz step.

    Converges fast when the spectrum has a gap after k (natural feature maps); matrices whose
    top-k Ritz pairs have not converged (flat spectra, e.g. white noise) are redone exactly.
    """
    q = min(k + OVERSAMPLE, *m.shape[1:])
    m64 = m.double()
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(m64 @ torch.randn(m.shape[-1], q, generator=gen, dtype=torch.float64)).Q
    for _ in range(SUBSPACE_ITERS):
        basis = torch.linalg.qr(m64 @ (m64.transpose(1, 2) @ basis)).Q
    u_small, s, _ = torch.linalg.svd(basis.transpose(1, 2) @ m64, full_matrices=False)
    u = basis @ u_small
    top, s2 = u[..., :k], s[:, :k] ** 2
    residual = (m64 @ (m64.transpose(1, 2) @ top) - top * s2[:, None, :]).norm(dim=1)
    stuck = (residual > RITZ_TOL * s2[:, :1].clamp(min=1e-300)).any(-1).nonzero().flatten()
    if len(stuck):
        exact_u, exact_s = _exact_directions(m[stuck])
        u, s = u.clone(), s.clone()
        u[stuck], s[stuck] = exact_u[..., :q], exact_s[:, :q]
    return u, s


def _random_directions(m: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(m.shape[0], m.shape[1], k, generator=gen, dtype=torch.float64)).Q


def _rank(s: torch.Tensor) -> torch.Tensor:
    """Numerical rank per matrix (values below a relative float32 tolerance count as zero)."""
    return (s > s[:, :1] * 1e-6).sum(-1)


def _weights(s: torch.Tensor, config: ASVPConfig, bottom: bool = False) -> torch.Tensor:
    """(a - 1) on the chosen directions, 0 elsewhere; k clamped to the rank, adaptive with tau."""
    rank = _rank(s)
    k = torch.minimum(torch.full_like(rank, config.k), rank)
    if config.tau is not None:
        energy = s.pow(2).cumsum(-1) / s.pow(2).sum(-1, keepdim=True).clamp(min=1e-300)
        k = torch.minimum(k, (energy < config.tau - 1e-12).sum(-1) + 1)
    idx = torch.arange(s.shape[-1])
    chosen = (idx >= rank[:, None] - k[:, None]) & (idx < rank[:, None]) if bottom else idx < k[:, None]
    return chosen.double() * (config.a - 1)


def amplify(feat: torch.Tensor, config: ASVPConfig) -> torch.Tensor:
    """The ASVP op on a B x C x H x W feature map; returns `feat` itself when it is the identity."""
    if config.is_identity:
        return feat
    m = _matrices(feat, config.layout)
    k = min(config.k, *m.shape[1:])
    if config.directions == "random":
        q = _random_directions(m, k, config.seed)
        w = torch.full((m.shape[0], k), config.a - 1, dtype=torch.float64)
    elif config.layout == "spatial" and config.directions == "top":
        q, s = _top_directions(m, k, config.seed)
        w = _weights(s, config)
    else:
        q, s = _exact_directions(m)
        w = _weights(s, config, bottom=config.directions == "bottom")
    # M' = M + Q diag(w) Q^T M, with the small projector in the feature's precision for speed
    work = torch.float32 if feat.dtype in (torch.float16, torch.bfloat16) else feat.dtype
    proj = ((q * w[:, None, :]) @ q.transpose(1, 2)).to(work)
    out = torch.baddbmm(m.to(work), proj, m.to(work))
    return out.reshape(feat.shape).to(feat.dtype)


def reference_amplify(feat: torch.Tensor, config: ASVPConfig) -> torch.Tensor:
    """Top-k (fixed k) amplification by full SVD in float64: the slow ground truth for tests."""
    m = _matrices(feat, config.layout).double()
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    s = s.clone()
    s[:, : config.k] *= config.a
    return (u @ torch.diag_embed(s) @ vh).reshape(feat.shape).to(feat.dtype)


def spectrum(feat: torch.Tensor, layout: str) -> torch.Tensor:
    """Leading singular values of the first image's feature (spatial: mean over its channels)."""
    m = _matrices(feat[:1].double(), layout)
    return torch.linalg.svdvals(m).mean(0)[:SPECTRUM_LEN].float()


@dataclass
class FeatureRecord:
    """What the hooks saw on the last forward: clean and exposed features, spectra for plots."""

    keep_spectra: bool = True
    clean: dict[str, torch.Tensor] = field(default_factory=dict)
    exposed: dict[str, torch.Tensor] = field(default_factory=dict)
    spectra: dict[str, tuple] = field(default_factory=dict)


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


@contextmanager
def defend(model: nn.Module, config: ASVPConfig, record: FeatureRecord | None = None):
    """Hook `config.layers` of any module for the duration of the block; hooks always go away.

    `inline`: the perturbed feature flows on. `exposed`: the network computes on the clean
    feature; only `record.exposed` (what a feature-KD attacker is handed) is perturbed.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in config.layers if n not in modules or not n]
    if unknown:
        raise ValueError(f"unknown layer {', '.join(map(repr, unknown))}; available: {', '.join(layer_names(model))}")
    if config.is_identity and record is None:
        yield record
        return

    def hook(name):
        def apply(_module, _inputs, out):
            perturbed = amplify(out, config)
            if record is not None:
                record.clean[name], record.exposed[name] = out.detach(), perturbed.detach()
                if record.keep_spectra:
                    record.spectra[name] = (spectrum(out, config.layout).numpy(),
                                            spectrum(perturbed, config.layout).numpy())
            return perturbed if config.placement == "inline" else out
        return apply

    handles = [modules[n].register_forward_hook(hook(n)) for n in config.layers]
    try:
        yield record
    finally:
        for h in handles:
            h.remove()
