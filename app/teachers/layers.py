"""Where a network can be hooked: the named modules whose output is a feature map that follows the
input (found by one probe forward)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureMap:
    """A layer the defense can hook: its output is a B x C x H x W map that follows the input."""

    name: str
    channels: int
    scale: Fraction  # map side / input side: 1/2 at half resolution, 2 after a x2 upsampler


@torch.no_grad()
def hookable_layers(model: nn.Module, probe: torch.Tensor) -> list[FeatureMap]:
    """The named modules whose output, in one forward of `probe` (B x 3 x H x W, H != W), is a
    feature map: 4-D, the probe's batch, and both sides scaled from the input's by one factor.
    That leaves out attention matrices (square, a batch of windows), channel gates (C x 1 x 1) and
    tokens. In the order the forward reaches them."""
    b, _, h, w = probe.shape
    if h == w:
        raise ValueError("the probe must not be square: a square map could not be told from the input's shape")
    found: dict[str, FeatureMap] = {}

    def seen(name):
        def hook(_module, _inputs, out):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == b and name not in found:
                scale = Fraction(out.shape[2], h)
                if scale == Fraction(out.shape[3], w):
                    found[name] = FeatureMap(name, out.shape[1], scale)
        return hook

    handles = [module.register_forward_hook(seen(name)) for name, module in model.named_modules() if name]
    try:
        model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return list(found.values())
