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
def probe_maps(model: nn.Module, probe: torch.Tensor) -> dict[str, torch.Size]:
    """The shape of every named module's output that is 4-D with the probe's batch, in one forward of
    `probe`, in the order the forward reaches them (a module called twice: its first output)."""
    maps: dict[str, torch.Size] = {}

    def seen(name):
        def hook(_module, _inputs, out):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == probe.shape[0]:
                maps.setdefault(name, out.shape)
        return hook

    handles = [module.register_forward_hook(seen(name)) for name, module in model.named_modules() if name]
    try:
        model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return maps


def hookable_layers(model: nn.Module, probe: torch.Tensor) -> list[FeatureMap]:
    """The named modules whose output, in one forward of `probe` (B x 3 x H x W, H != W), is a
    feature map: 4-D, the probe's batch, and both sides scaled from the input's by one factor.
    That leaves out attention matrices (square, a batch of windows), channel gates (C x 1 x 1) and
    tokens. In the order the forward reaches them."""
    h, w = probe.shape[2:]
    if h == w:
        raise ValueError("the probe must not be square: a square map could not be told from the input's shape")
    return [FeatureMap(name, shape[1], Fraction(shape[2], h)) for name, shape in probe_maps(model, probe).items()
            if Fraction(shape[2], h) == Fraction(shape[3], w)]


def hidden_multiple(model: nn.Module, probe: torch.Tensor) -> int:
    """The multiple a network pads its input to inside its forward (windowed attention pads to its
    window), read from the first map of the probe's batch whose sides are not the input's scaled by one
    factor; 1 where every map follows the input, or where no padding explains the first that does not."""
    h, w = probe.shape[2:]
    padded = next(((shape[2], shape[3]) for shape in probe_maps(model, probe).values()
                   if Fraction(shape[2], h) != Fraction(shape[3], w)), None)
    if padded is None:
        return 1
    return next((q for q in range(2, max(padded) + 1) if (-(-h // q) * q, -(-w // q) * q) == padded), 1)
