"""PSNR/SSIM by the paper convention (BasicSR / MATLAB reference), with skimage underneath."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of float RGB in [0, 1], in [16/255, 235/255] like MATLAB rgb2ycbcr."""
    return (16.0 + img @ np.array([65.481, 128.553, 24.966])) / 255.0


def _prepare(img: np.ndarray, crop_border: int, test_y_channel: bool) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    return rgb_to_y(img) if test_y_channel else img


def calculate_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """PSNR in dB of two float RGB images in [0, 1]; inf when identical."""
    a, b = _prepare(img, crop_border, test_y_channel), _prepare(img2, crop_border, test_y_channel)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def calculate_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """SSIM with the Gaussian window of Wang et al. (sigma 1.5, population covariance)."""
    a, b = _prepare(img, crop_border, test_y_channel), _prepare(img2, crop_border, test_y_channel)
    return float(structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=None if a.ndim == 2 else 2))


def score(restored: np.ndarray, target: np.ndarray, task) -> dict[str, float]:
    """PSNR and SSIM of `restored` against `target` under the task's convention."""
    kw = dict(crop_border=task.crop_border, test_y_channel=task.y_channel)
    return {"psnr": calculate_psnr(restored, target, **kw), "ssim": calculate_ssim(restored, target, **kw)}


def _radial_bands(img: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band centres (cycles/pixel, 0 to Nyquist), total power and pixel count per radial band."""
    grey = img.mean(axis=2) if img.ndim == 3 else img
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    edges = np.linspace(0, 0.5, bins + 1)
    band = np.clip(np.digitize(np.hypot(fy, fx), edges) - 1, 0, bins - 1).ravel()
    return (edges[:-1] + edges[1:]) / 2, np.bincount(band, power.ravel(), bins), np.bincount(band, minlength=bins)


def radial_spectrum(img: np.ndarray, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per radial frequency band: is a perturbation a colour cast or a texture?"""
    centres, total, count = _radial_bands(img, bins)
    return centres, total / np.maximum(count, 1)


def high_frequency_share(img: np.ndarray) -> float:
    """Share of an image's (mean-removed) energy above half the Nyquist frequency."""
    centres, total, _ = _radial_bands(img, 64)
    return float(total[centres > 0.25].sum() / max(total.sum(), 1e-20))
