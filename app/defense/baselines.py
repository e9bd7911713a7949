"""Baselines the defense must beat at the same teacher cost, and the search that matches costs."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn


@contextmanager
def output_noise(model: nn.Module, sigma: float, seed: int = 0):
    """Serve the teacher's answers with seeded Gaussian noise: the naive defense (none at sigma 0)."""
    if sigma == 0:
        yield
        return
    gen = torch.Generator().manual_seed(seed)
    handle = model.register_forward_hook(
        lambda _m, _inp, out: out + sigma * torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device))
    try:
        yield
    finally:
        handle.remove()


def calibrate(drop_at: Callable[[float], float], target: float, lo: float, hi: float, iters: int = 12) -> float:
    """The strength in [lo, hi] whose teacher drop matches `target` (bisection on a log scale).

    `drop_at` must grow with the strength; the ends are returned when the target is out of reach.
    """
    if drop_at(hi) <= target:
        return hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if drop_at(mid) < target else (lo, mid)
    return math.sqrt(lo * hi)
