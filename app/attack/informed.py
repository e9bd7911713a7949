"""What an attacker who knows the defense does to the features it is handed, before matching them.

- `unamplified`: an amplified top direction stands out of a spectrum that otherwise decays smoothly. Each
  map, as C x HW matrices (ASVP's channel layout), has its head singular values that rise more than
  OUTLIER times above the log-linear trend of its tail put back onto that trend: no knowledge of k or a.
- `affinity`: FAKD-style, what the features say about which positions go together, not their scale: per
  image, the cosine similarity of every pair of positions of the map average-pooled to at most
  AFFINITY_SIDE px a side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


TAIL_FROM = 0.25  # the tail whose trend is fitted: the singular values past the first quarter
OUTLIER = 2.0  # a head value this many times above the tail's trend counts as amplified
AFFINITY_SIDE = 16  # 256 positions: a 256 x 256 similarity matrix per image


@torch.no_grad()
def unamplified(feat: torch.Tensor) -> torch.Tensor:
    """`feat` (B x C x H x W) with each image's amplified head singular values shrunk onto its tail's trend."""
    b, c, h, w = feat.shape
    u, s, vh = torch.linalg.svd(feat.reshape(b, c, h * w).double(), full_matrices=False)  # s: B x r, descending
    r = s.shape[-1]
    start = max(1, int(r * TAIL_FROM))
    if r - start < 2:  # too few values for a trend
        return feat
    i = torch.arange(r, dtype=s.dtype, device=s.device)
    tail_i, tail_log = i[start:], s[:, start:].clamp_min(1e-30).log()  # B x (r - start)
    slope = ((tail_i - tail_i.mean()) * (tail_log - tail_log.mean(-1, keepdim=True))).sum(-1) / (
        (tail_i - tail_i.mean()).square().sum())  # least squares, per image
    trend = (tail_log.mean(-1, keepdim=True) + slope[:, None] * (i - tail_i.mean())).exp()  # B x r
    shrunk = torch.where((i < start) & (s > OUTLIER * trend), trend, s)
    return (u @ (shrunk[..., None] * vh)).reshape(b, c, h, w).to(feat.dtype)


def affinity(feat: torch.Tensor) -> torch.Tensor:
    """B x N x N cosine similarities between the N positions of `feat` pooled to at most AFFINITY_SIDE a side."""
    side = min(AFFINITY_SIDE, feat.shape[-2], feat.shape[-1])
    vectors = F.normalize(F.adaptive_avg_pool2d(feat, side).flatten(2), dim=1)  # B x C x N, unit per position
    return vectors.mT @ vectors
