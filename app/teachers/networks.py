"""Restoration networks: a small U-Net teacher and a few-layer student, both Hub-serialisable.

Every network predicts a residual on top of its input (bicubic-upsampled for super-resolution),
so an untrained net starts at the input's quality. Named stages (`enc1`, `mid`, ...) are where
the defense hooks in.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from app.devices import device_of


HUB_TAGS = ["image-restoration", "asvp-lab"]


def upsample_input(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The base the residual is added to: the input itself, or its bicubic upsampling for SR."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (EDSR style, no normalisation)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class ChannelAttention(nn.Module):
    """Squeeze-excitation gate: global statistics steer colour and contrast (haze, water, light)."""

    def __init__(self, c: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def stage(c: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(c) for _ in range(blocks)], ChannelAttention(c))


class UNetTeacher(nn.Module, PyTorchModelHubMixin, library_name="pytorch", tags=HUB_TAGS, license="mit"):
    """Three-level U-Net: full, 1/2 and 1/4 resolution, pixel-shuffle up, additive skips."""

    def __init__(self, width: int = 24, blocks: tuple[int, int, int] = (1, 2, 2), scale: int = 1):
        super().__init__()
        w, self.scale = width, scale
        self.head = nn.Conv2d(3, w, 3, padding=1)
        self.enc1 = stage(w, blocks[0])
        self.down1 = nn.Conv2d(w, 2 * w, 2, stride=2)
        self.enc2 = stage(2 * w, blocks[1])
        self.down2 = nn.Conv2d(2 * w, 4 * w, 2, stride=2)
        self.mid = stage(4 * w, blocks[2])
        self.up2 = nn.Sequential(nn.Conv2d(4 * w, 8 * w, 1), nn.PixelShuffle(2))
        self.dec2 = stage(2 * w, blocks[1])
        self.up1 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 1), nn.PixelShuffle(2))
        self.dec1 = stage(w, blocks[0])
        self.tail = nn.Sequential(nn.Conv2d(w, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4  # the two stride-2 levels need sizes divisible by 4
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(self.head(xp))
        e2 = self.enc2(self.down1(e1))
        d2 = self.dec2(self.up2(self.mid(self.down2(e2))) + e2)
        d1 = self.dec1(self.up1(d2) + e1)
        out = self.tail(d1)[..., : h * self.scale, : w * self.scale]
        return upsample_input(x, self.scale) + out


class QuickStudent(nn.Module, PyTorchModelHubMixin, library_name="pytorch", tags=HUB_TAGS, license="mit"):
    """What an attacker trains in seconds: a few convs plus a global colour branch.

    `dilated` convs (dilation 1, 2, 4) see the wide context haze, rain and colour casts need;
    super-resolution wants local detail and plain convs. `leak` > 0 uses LeakyReLU: with inputs
    in [0, 1] plain ReLUs start out nearly linear, and an SR student can sit for hundreds of steps
    on the best linear filter before it finds edges. The last conv starts at zero, so the
    untrained student returns its (upsampled) input.
    """

    def __init__(self, width: int = 16, depth: int = 4, scale: int = 1, dilated: bool = True, leak: float = 0.0):
        super().__init__()
        self.scale, self.width = scale, width
        layers, c_in = [], 3
        for i in range(depth - 1):
            d = 2 ** (i % 3) if dilated else 1
            layers += [nn.Conv2d(c_in, width, 3, padding=d, dilation=d), nn.LeakyReLU(leak) if leak else nn.ReLU()]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.colour = nn.Sequential(nn.Conv2d(3, width, 1), nn.ReLU(), nn.Conv2d(width, width, 1))
        self.tail = nn.Sequential(nn.Conv2d(width, 3 * scale * scale, 3, padding=1),
                                  nn.PixelShuffle(scale) if scale > 1 else nn.Identity())  # a 1x shuffle still copies
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def features(self, x):
        """The hidden map a feature-KD attacker aligns with the teacher's hooked layer."""
        return self.body(x) + self.colour(x.mean((2, 3), keepdim=True))

    def residual(self, hidden: torch.Tensor) -> torch.Tensor:
        """The correction to the upsampled input before its sub-pixels are shuffled into place
        (B x 3*scale^2 x H x W, colour-major as pixel_shuffle reads it): a trainer fits it to the
        answers' residual, unshuffled once, and never shuffles at every step."""
        return self.tail[0](hidden)

    def forward(self, x):
        return upsample_input(x, self.scale) + self.tail(self.features(x))


# the classes a config.json may name (our own layout): nothing else is ever built from a config
CONFIG_CLASSES: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (UNetTeacher, QuickStudent)}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def restore(model: nn.Module, img: np.ndarray) -> np.ndarray:
    """Run a restoration net on one float RGB image in [0, 1]; returns the same layout, clipped."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    return model(x.to(device_of(model)))[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
