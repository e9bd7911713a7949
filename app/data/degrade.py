"""Seeded, physically motivated degradations: clean float RGB in [0, 1] -> degraded, same range.

Each takes (clean, rng) so a pair is reproducible from its seed.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def bicubic_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize to (h, w), close to MATLAB imresize (the Set5 convention)."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=size, mode="bicubic", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


def downscale(scale: int):
    """Super-resolution: bicubic (antialiased) downscale by `scale`; the crop keeps sizes exact."""

    def degrade(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Bicubic (antialiased) downscale, the MATLAB-imresize protocol of Set5."""
        h, w = clean.shape[0] // scale, clean.shape[1] // scale
        return bicubic_resize(clean, (h, w))

    return degrade


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, sigma_frac: float = 0.15) -> np.ndarray:
    """A smooth random field in [0, 1]: plausible low-frequency depth or illumination variation."""
    h, w = shape
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=max(h, w) * sigma_frac, mode="reflect")
    field -= field.min()
    return field / max(field.max(), 1e-8)


def scene_depth(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Depth in [0, 1]: far at the top of the frame, near at the bottom, with smooth clutter."""
    h, w = shape
    ramp = np.linspace(1.0, 0.0, h)[:, None] * np.ones((1, w))
    mix = rng.uniform(0.3, 0.8)
    return mix * ramp + (1 - mix) * smooth_field(shape, rng)


def low_light(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure (gain and gamma) then Poisson-Gaussian sensor noise."""
    gain = rng.uniform(0.08, 0.25)
    gamma = rng.uniform(1.2, 1.8)
    dark = gain * clean ** gamma
    photons = rng.uniform(80, 400)  # photons at full scale: fewer means noisier
    noisy = rng.poisson(dark * photons) / photons + rng.normal(0, rng.uniform(0.002, 0.01), clean.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def underwater(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wavelength-dependent attenuation (red first) and blue-green backscatter: I = J t + B (1 - t).

    Ranges match the per-channel gains and offsets of paired shallow-water photos (EUVP-like):
    red keeps 30-90 % of its signal, green and blue 65-100 %, over a bright green-blue veil.
    """
    h, w = clean.shape[:2]
    dist = rng.uniform(0.8, 3.0) * (0.6 + 0.4 * smooth_field((h, w), rng))[..., None]
    beta = np.array([rng.uniform(0.15, 0.55), rng.uniform(0.03, 0.2), rng.uniform(0.02, 0.18)])
    backscatter = np.array([rng.uniform(0.0, 0.15), rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95)])
    t = np.exp(-beta * dist)
    return np.clip(clean * t + backscatter * (1 - t), 0, 1).astype(np.float32)


def haze(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Atmospheric scattering: I = J t + A (1 - t), t = exp(-beta d) over a plausible depth d."""
    d = scene_depth(clean.shape[:2], rng)[..., None] * rng.uniform(0.8, 2.0)
    beta = rng.uniform(0.5, 1.5)
    airlight = rng.uniform(0.7, 1.0) + rng.uniform(-0.04, 0.04, 3)
    t = np.exp(-beta * d)
    return np.clip(clean * t + airlight * (1 - t), 0, 1).astype(np.float32)


def line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised motion-blur line of `length` pixels at `angle_deg` (90 = vertical)."""
    size = length | 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    a = np.deg2rad(angle_deg)
    for s in np.linspace(-c, c, 2 * size):
        k[int(round(c - s * np.sin(a))), int(round(c + s * np.cos(a)))] = 1.0
    return k / k.sum()


def rain(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rain: layers of oriented, motion-blurred noise lines, screen-blended, with a light veil."""
    h, w = clean.shape[:2]
    angle = 90 + rng.uniform(-25, 25)
    streaks = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 4)):
        drops = (rng.random((h, w)) < rng.uniform(0.004, 0.03)).astype(np.float32)
        drops = ndimage.gaussian_filter(drops, rng.uniform(0.3, 0.8))
        kernel = line_kernel(int(rng.integers(12, 40)), angle + rng.uniform(-4, 4))
        layer = ndimage.convolve(drops, kernel, mode="reflect")
        streaks += layer / max(layer.max(), 1e-6) * rng.uniform(0.4, 0.95)
    streaks = np.clip(streaks, 0, 1)[..., None]
    veil = rng.uniform(0.0, 0.25)
    veiled = clean * (1 - veil) + veil * rng.uniform(0.7, 0.95)
    return np.clip(1 - (1 - veiled) * (1 - streaks), 0, 1).astype(np.float32)
