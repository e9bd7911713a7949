"""The architectures the lab trains as bundled teachers: a small preset table, one entry a family.

`unet` is our own UNetTeacher (config.json layout); the others are field families built from
spandrel's implementations and saved as bare checkpoints, which the loader detects like any
checkpoint from the Hub. Sizes are chosen to run a 512 x 512 image in about a second on 2 CPU cores.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from app.teachers.families import FAMILIES, OWN, Family, import_spandrel
from app.teachers.networks import UNetTeacher


@dataclass(frozen=True)
class Arch:
    family: Family
    build: Callable[[int], nn.Module]  # scale -> a fresh network
    scales: tuple[int, ...]  # the scales it can serve


def compact(scale: int, num_feat: int = 48, num_conv: int = 12) -> nn.Module:
    """Real-ESRGAN Compact, started well: a plain 14-conv stack under PyTorch's default init shrinks
    its signal about 1/sqrt(3) per conv, and at x4 it sat on its nearest-neighbour base for 4000
    steps (measured here). He init for the PReLU body, and a zero last conv, so the untrained net
    returns its nearest-upsampled input and learns the residual from the first step."""
    net = _spandrel("Compact")(num_feat=num_feat, num_conv=num_conv, upscale=scale)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="leaky_relu")  # PReLU starts at slope 0.25
        nn.init.zeros_(conv.bias)
    nn.init.zeros_(convs[-1].weight)
    nn.init.zeros_(convs[-1].bias)
    return net


def nafnet(width: int = 16, middle: int = 2, encoders: tuple[int, ...] = (1, 1, 2),
           decoders: tuple[int, ...] = (1, 1, 1)) -> nn.Module:
    """NAFNet (restoration at one scale): `width` channels at full size, blocks per level."""
    return _spandrel("NAFNet")(width=width, middle_blk_num=middle, enc_blk_nums=list(encoders),
                               dec_blk_nums=list(decoders))


def _spandrel(name: str):
    """spandrel's network class of one family (spandrel.architectures.<name>.<name>)."""
    import_spandrel()
    return getattr(importlib.import_module(f"spandrel.architectures.{name}"), name)


ARCHES: dict[str, Arch] = {
    "unet": Arch(OWN, lambda s: UNetTeacher(scale=s), (1, 2, 4)),
    "compact": Arch(FAMILIES["Compact"], compact, (1, 2, 4)),
    "swinir": Arch(FAMILIES["SwinIR"], lambda s: _spandrel("SwinIR")(
        upscale=s, img_size=48, window_size=8, embed_dim=48, depths=[4, 4], num_heads=[4, 4], mlp_ratio=2,
        upsampler="pixelshuffledirect", resi_connection="1conv"), (2, 4)),
    "nafnet": Arch(FAMILIES["NAFNet"], lambda s: nafnet(), (1,)),
    "retinexformer": Arch(FAMILIES["RetinexFormer"], lambda s: _spandrel("RetinexFormer")(
        n_feat=16, stage=1, num_blocks=[1, 2, 2]), (1,)),
}


def build(arch: str, scale: int) -> nn.Module:
    """A fresh network of a preset, for a task's scale; a clear error for a mismatch."""
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    if scale not in ARCHES[arch].scales:
        raise ValueError(f"{arch} serves scale {', '.join(map(str, ARCHES[arch].scales))}, not x{scale}")
    return ARCHES[arch].build(scale)
