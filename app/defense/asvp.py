"""ASVP: amplify the top-k singular values of hooked feature maps by a factor a.

Both layouts reduce to one update of a batch of matrices M with orthonormal directions Q:
    M' = M + Q diag(w) Q^T M,   w = a - 1 on the chosen directions and 0 elsewhere,
which multiplies exactly the chosen singular values by a when Q holds left singular vectors of M.
Each M is turned "wide" (rows <= columns) so that Q lives in the smaller space and comes from the
rows x rows Gram M M^T, never from an SVD of M itself:
- `channel`: M = F.reshape(C, H*W) per image. C << HW, so eigh of the C x C Gram (float64) gives
  every singular direction exactly, and the update is one rank-k product.
- `spatial`: M = each channel's H x W map. Only the top few directions are needed, so they come
  from a subspace iteration on the Gram; a map whose estimated error misses the budget is redone
  exactly (flat spectra, near-ties at s_k).
`directions` swaps Q for the bottom-k (smallest resolvable) or a seeded random k-dim subspace:
baselines that tell whether the *top* directions matter. They share k selection and update.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from app.defense.setting import Setting


SPECTRUM_LEN = 32  # singular values kept for plots
# Spatial subspace iteration (see _top_subspace). Chosen on 64 x 64 maps against full SVDs: smooth
# random fields and real teacher activations converge in one or two rounds (relative error ~1e-6
# to 1e-5); white noise, the flattest spectrum, mostly ends on the exact path (error ~2e-4).
OVERSAMPLE = 8  # extra basis vectors beyond k
SUBSPACE_ITERS = 2  # G^2 steps (one QR each) per round
SUBSPACE_ROUNDS = 3  # rounds before a map is redone exactly
SUBSPACE_TOL = 3e-4  # estimated relative output error that counts as converged (budget: 1e-3)


# ---- the op ------------------------------------------------------------------------------------

def _matrices(feat: torch.Tensor, layout: str) -> tuple[torch.Tensor, bool]:
    """B x C x H x W -> a batch of wide matrices (B x C x HW or BC x H x W) and whether transposed."""
    if feat.dim() != 4:
        raise ValueError(f"ASVP needs a B x C x H x W feature map, got shape {tuple(feat.shape)}")
    b, c, h, w = feat.shape
    m = feat.reshape(b, c, h * w) if layout == "channel" else feat.reshape(b * c, h, w)
    return (m.mT, True) if m.shape[1] > m.shape[2] else (m, False)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 features stay float64; everything else (float32, fp16, bf16) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rank_tol(rows: int, dtype: torch.dtype) -> float:
    """s_i / s_1 below this is lost in the Gram's rounding (~sqrt(eps) s_1): it counts as zero."""
    return math.sqrt(rows * torch.finfo(_work_dtype(dtype)).eps)


def _gram(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M M^T per matrix (in M's precision) and the scale each was taken at.

    float32 is enough for the product (its rounding, ~eps32 s_1^2, is far inside the error
    budgets) and it is the biggest cost. Maps whose squares would overflow or underflow are divided
    by their largest entry first, so huge and tiny features stay finite and resolvable.
    """
    g = m @ m.mT
    info = torch.finfo(m.dtype)
    peak = g.diagonal(dim1=1, dim2=2).amax(-1)
    # The subspace iteration forms G^2 products, so its entries must stay normal numbers too.
    lo, hi = info.tiny ** 0.5 / info.eps, info.max ** 0.5 / m.shape[1]
    suspect = ~((peak >= lo) & (peak <= hi))  # NaN included
    scale = torch.ones(m.shape[0], dtype=m.dtype, device=m.device)
    if suspect.any():
        idx = suspect.nonzero().flatten()
        peak = m[idx].abs().amax((1, 2))
        idx, peak = idx[peak > 0], peak[peak > 0]  # all-zero maps have a true zero Gram
        unit = m[idx] / peak[:, None, None]
        g[idx], scale[idx] = unit @ unit.mT, peak
    return g, scale


def _exact(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs of the Grams in float64, largest first: (directions, singular values)."""
    lam, vec = torch.linalg.eigh(g.double())
    return vec.flip(-1), lam.flip(-1).clamp(min=0).sqrt()


def _counts(s: torch.Tensor, energy: torch.Tensor, config: Setting, tol: float):
    """Per matrix: numerical rank and the k to use (clamped to the rank; adaptive with tau)."""
    rank = (s > s[:, :1] * tol).sum(-1)
    k = rank.clamp(max=config.k)
    if config.tau is not None:
        share = s.square().cumsum(-1) / energy.clamp(min=torch.finfo(energy.dtype).tiny)[:, None]
        k = torch.minimum(k, (share < config.tau * (1 - 1e-6)).sum(-1) + 1)
    return rank, k


def _weights(cols: int, rank: torch.Tensor, k: torch.Tensor, config: Setting) -> torch.Tensor:
    """a - 1 on the chosen columns (first k, or the last k below the rank for `bottom`), else 0."""
    idx = torch.arange(cols, device=k.device)
    if config.directions == "bottom":
        chosen = (idx >= (rank - k)[:, None]) & (idx < rank[:, None])
    else:
        chosen = idx < k[:, None]
    return chosen.double() * (config.a - 1)


def _ritz(bt: torch.Tensor, gbt: torch.Tensor, trace: torch.Tensor, config: Setting, tol: float):
    """Rayleigh-Ritz on the rows of `bt` (orthonormal) for Grams G; gbt = bt G, trace = tr G.

    Returns directions (as columns), singular values and whether each map meets the error budget.
    Error estimate, first order: Ritz vector j is off by about |r_j| / (lam_j - lam_rest), with r_j
    its residual G u_j - lam_j u_j and lam_rest (the rest of the space) proxied by the smallest
    Ritz value; it carries s_j of the map, so the output moves by |a - 1| sqrt(sum_j of
    (|r_j| s_j / (lam_j - lam_rest))^2) relative to min(1, a) |M|_F. Against full SVDs of real and
    synthetic maps it is within 2x of the true error near the budget (median: 2x above).
    """
    lam, v = torch.linalg.eigh(bt @ gbt.mT)
    lam, vt = lam.flip(-1).clamp(min=0), v.flip(-1).mT
    ut, s = vt @ bt, lam.sqrt()
    _, k = _counts(s, trace, config, tol)
    used = torch.arange(s.shape[-1], device=s.device) < k[:, None]
    resid = (vt @ gbt - ut * lam[..., None]).norm(dim=-1)
    gap = (lam - lam[:, -1:]).clamp(min=torch.finfo(lam.dtype).tiny)
    err = torch.where(used, resid * s / gap, 0).norm(dim=-1) / trace.sqrt()
    err = err * abs(config.a - 1) / min(1.0, config.a)
    return ut.mT, s, (k == 0) | (err <= SUBSPACE_TOL)  # NaN is not converged


def _top_subspace(g: torch.Tensor, config: Setting, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top directions by subspace iteration on G^2, in rounds that stop per map once converged.

    Oversampling makes convergence depend on s_{k+p+1} / s_k rather than on the often tiny gap
    s_{k+1} / s_k; iterating with G^2 squares that ratio again. Maps still unconverged after the
    last round (flat spectra, near-ties, extreme a) are redone exactly. Bases are kept as rows:
    (q x n) @ (n x n) products are several times faster than (n x n) @ (n x q) ones on CPU.
    """
    trace = g.diagonal(dim1=1, dim2=2).sum(-1)
    cols = min(config.k + OVERSAMPLE, g.shape[-1])
    gbt = torch.randn(cols, g.shape[-1], generator=torch.Generator().manual_seed(0), dtype=g.dtype).to(g.device) @ g
    u = s = None
    todo = torch.arange(g.shape[0], device=g.device)  # maps still iterating; g and gbt hold only those
    for _ in range(SUBSPACE_ROUNDS):
        for _ in range(SUBSPACE_ITERS):
            bt = torch.linalg.qr((gbt @ g).mT).Q.mT
            gbt = bt @ g
        u_new, s_new, done = _ritz(bt, gbt, trace[todo], config, tol)
        if u is None:
            u, s = u_new, s_new
        else:
            u[todo], s[todo] = u_new, s_new
        if done.all():
            break
        if done.any():
            todo, g, gbt = todo[~done], g[~done], gbt[~done]
    else:
        exact_u, exact_s = _exact(g)
        u[todo], s[todo] = exact_u[..., :cols].to(u.dtype), exact_s[:, :cols].to(s.dtype)
    return u, s


def amplify(feat: torch.Tensor, config: Setting) -> torch.Tensor:
    """The ASVP op on a B x C x H x W map, in its dtype (half types are computed in float32).

    Returns `feat` itself when nothing is amplified: k = 0, a = 1, all-zero maps.
    """
    if config.is_identity:
        return feat
    m, transposed = _matrices(feat, config.layout)
    work = _work_dtype(feat.dtype)
    m = m.to(work)
    g, _ = _gram(m)  # directions, rank and energy shares do not depend on the scale
    tol = _rank_tol(m.shape[1], feat.dtype)
    if config.layout == "spatial" and config.directions == "top" and 2 * (config.k + OVERSAMPLE) <= m.shape[1]:
        q, s = _top_subspace(g, config, tol)
    else:
        q, s = _exact(g)
    rank, k = _counts(s, g.diagonal(dim1=1, dim2=2).sum(-1).to(s.dtype), config, tol)
    if config.directions == "random":
        gen = torch.Generator().manual_seed(config.seed)
        q = torch.linalg.qr(torch.randn(m.shape[0], m.shape[1], int(k.max()), generator=gen,
                                        dtype=torch.float64).to(m.device)).Q
    w = _weights(q.shape[-1], rank, k, config)
    keep = (w != 0).any(0)
    if not keep.any():  # zero maps, or k clamped to 0 everywhere
        return feat
    q, w = q[..., keep].to(work), w[:, keep].to(work)
    qw, proj = q * w[:, None, :], q.mT @ m
    # M + Q diag(w) Q^T M, rank k; for one direction the broadcast outer product is several times
    # faster than baddbmm, whose inner dimension of 1 takes a slow path
    out = torch.addcmul(m, qw, proj) if qw.shape[-1] == 1 else torch.baddbmm(m, qw, proj)
    return (out.mT if transposed else out).reshape(feat.shape).to(feat.dtype)


def reference_amplify(feat: torch.Tensor, config: Setting) -> torch.Tensor:
    """The same op by a full float64 SVD of every matrix: the slow ground truth (top and bottom)."""
    if config.directions == "random":
        raise ValueError("random directions have no SVD reference")
    if config.is_identity:
        return feat
    m, transposed = _matrices(feat.double(), config.layout)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    rank, k = _counts(s, s.square().sum(-1), config, _rank_tol(m.shape[1], feat.dtype))
    s = s * (1 + _weights(s.shape[-1], rank, k, config))
    out = u @ (s[..., None] * vh)
    return (out.mT if transposed else out).reshape(feat.shape).to(feat.dtype)


def spectrum(feat: torch.Tensor, layout: str) -> np.ndarray:
    """Leading singular values of the first image's map, for plots (spatial: mean over channels)."""
    m, _ = _matrices(feat[:1].detach(), layout)
    g, scale = _gram(m.to(_work_dtype(feat.dtype)))
    s = torch.linalg.eigvalsh(g.double()).flip(-1).clamp(min=0).sqrt() * scale.double()[:, None]
    return s.mean(0)[:SPECTRUM_LEN].float().cpu().numpy()


# ---- hooks -------------------------------------------------------------------------------------

@dataclass
class FeatureRecord:
    """What the hooks saw on the last forward, per hooked layer.

    `clean`: the layer's own output (upstream inline perturbations included); `exposed`: what a
    feature-KD attacker is handed (the perturbed copy; the clean one when the config is the
    identity). Spectra are computed on demand, so recording for an attacker costs nothing extra.
    """

    clean: dict[str, torch.Tensor] = field(default_factory=dict)
    exposed: dict[str, torch.Tensor] = field(default_factory=dict)
    layouts: dict[str, str] = field(default_factory=dict)

    @property
    def spectra(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per layer: (before, after) leading singular values of the first image."""
        return {n: (spectrum(self.clean[n], lay), spectrum(self.exposed[n], lay)) for n, lay in self.layouts.items()}




@contextmanager
def defend(model: nn.Module, config: Setting, record: FeatureRecord | None = None):
    """Hook `config.layers` of any module for the duration of the block; the hooks always go away.

    `inline`: the perturbed feature flows on. `exposed`: the network computes on the clean feature;
    only `record.exposed` is perturbed. With an identity config (k = 0 or a = 1) and a record, the
    hooks only record: that is how a feature-KD attacker reads an undefended teacher.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in config.layers if n not in modules or not n]
    if unknown:
        parts = ", ".join(name for name, _ in model.named_children())
        raise ValueError(f"unknown layer {', '.join(map(repr, unknown))}: the model has no such submodule "
                         f"(its top-level parts: {parts})")
    inline = config.placement == "inline" and not config.is_identity
    if not inline and record is None:  # nothing would change and nothing is asked for
        yield None
        return

    def hook(name):
        def apply(_module, _inputs, out):
            if not isinstance(out, torch.Tensor) or out.dim() != 4:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"layer {name!r} outputs {got}; ASVP needs a B x C x H x W tensor")
            perturbed = amplify(out, config)
            if record is not None:  # copies: a later in-place op (ReLU(inplace=True)) must not reach them
                clean = out.detach().clone()
                record.clean[name] = clean
                record.exposed[name] = clean if perturbed is out else perturbed.detach().clone()
                record.layouts[name] = config.layout
            return perturbed if inline else None  # None keeps the module's own output
        return apply

    handles = []
    try:
        for name in dict.fromkeys(config.layers):
            handles.append(modules[name].register_forward_hook(hook(name)))
        yield record
    finally:
        for h in handles:
            h.remove()
