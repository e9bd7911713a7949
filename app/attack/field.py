"""The field student: a thief who trains a real restoration architecture, not a quick one, and for long.

SR students are a small Real-ESRGAN Compact (SRVGGNet, the field's compact real-world SR model); the other
tasks' a small NAFNet (spandrel's implementations of both). Each is split as QuickStudent is: `features`,
the full-size map a feature-KD attacker aligns with the teacher's (Compact's last activation; NAFNet's last
decoder), and `residual`, the last conv's correction to the upsampled input in sub-pixel layout, so the
attack's trainer (app.attack.distill) fits either student the same way. Sizes are set so that a student
of 10,000 steps trains in minutes on one core (`python -m app.experiments --plan` prints them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.teachers.architectures import compact, nafnet
from app.teachers.networks import upsample_input


COMPACT = dict(num_feat=24, num_conv=6)  # SR: 8 convs of 24 channels
NAFNET = dict(width=16, middle=1, encoders=(1, 1, 1), decoders=(1, 1, 1))  # the rest: one block a level
# NAFNet's published rate (its SIDD recipe: AdamW at 1e-3, no weight decay, cosine). At the quick students' 4e-3
# NAFNets taught by an L2 attacker on low light blew up mid-run: two of three clean-taught twins ended below their
# input (results/field_lowlight-retinexformer.csv at 3c7ec14). The Compact fits every SR teacher at the attacker's.
NAFNET_LR = 1e-3


class FieldStudent(nn.Module):
    """A small Compact (`scale` > 1) or NAFNet (`scale` 1) with QuickStudent's `features` / `residual` split."""

    def __init__(self, scale: int = 1):
        super().__init__()
        self.scale = scale
        if scale > 1:
            self.net = compact(scale, **COMPACT)  # He init, zero last conv: starts as its upsampled input
            self.width = COMPACT["num_feat"]
        else:
            self.net = nafnet(**NAFNET)
            nn.init.zeros_(self.net.ending.weight)  # starts as the identity, like the other students
            nn.init.zeros_(self.net.ending.bias)
            self.width = NAFNET["width"]

    @staticmethod
    def learning_rate(scale: int, attacker_lr: float) -> float:
        """The rate a field student of a task of `scale` trains at: NAFNet's own, the Compact the attacker's."""
        return attacker_lr if scale > 1 else NAFNET_LR

    @property
    def name(self) -> str:
        """The architecture in words, for reports."""
        if self.scale > 1:
            return f"Real-ESRGAN Compact ({COMPACT['num_conv'] + 2} convs of {COMPACT['num_feat']})"
        return f"NAFNet (width {NAFNET['width']}, one block a level)"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The full-size hidden map (B x width x H x W) the last conv reads. NAFNet pads a side that its
        levels' stride does not divide and crops the map back (spandrel's crops after the last conv: the
        two differ at such a border only; every training patch is a multiple of the stride)."""
        if self.scale > 1:
            for layer in self.net.body[:-1]:
                x = layer(x)
            return x
        h, w = x.shape[-2:]
        x = self.net.intro(self.net.check_image_size(x))  # padded to a multiple of the levels' stride
        skips = []
        for encoder, down in zip(self.net.encoders, self.net.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.net.middle_blks(x)
        for decoder, up, skip in zip(self.net.decoders, self.net.ups, skips[::-1]):
            x = decoder(up(x) + skip)
        return x[..., :h, :w]

    def residual(self, hidden: torch.Tensor) -> torch.Tensor:
        """The correction to the upsampled input, before its sub-pixels are shuffled (B x 3*scale^2 x H x W)."""
        return (self.net.body[-1] if self.scale > 1 else self.net.ending)(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(self.features(x))
        return upsample_input(x, self.scale) + (F.pixel_shuffle(out, self.scale) if self.scale > 1 else out)
