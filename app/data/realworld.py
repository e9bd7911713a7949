"""Real-ESRGAN's second-order degradation model (Wang et al., ICCVW 2021): a clean image blurred, resized,
noised and JPEG-compressed, twice, then brought to 1/scale of its size, the way the field's real-world SR
models were trained. Seeded: one generator draws every choice, so a pair is reproducible from its seed.

The ranges are Real-ESRGAN's published training settings (its x4plus options), as explicit fields of
`SecondOrder` rather than constants buried in the code."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import special


KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Stage:
    """One round of blur, resize, noise and JPEG."""

    blur_prob: float
    kernel_probs: tuple[float, ...]  # over KERNELS
    sinc_prob: float
    blur_sigma: tuple[float, float]
    resize_probs: tuple[float, float, float]  # up, down, keep
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_sigma: tuple[float, float]  # in 8-bit levels
    poisson_scale: tuple[float, float]
    gray_noise_prob: float
    jpeg_quality: tuple[int, int]


@dataclass(frozen=True)
class SecondOrder:
    """Real-ESRGAN's second-order degradation: blur, resize, noise and JPEG, twice, then the final resize.

    Called as the task's degradation: (clean H x W x 3 in [0, 1], a seeded generator) -> the degraded image."""

    scale: int = 4
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    final_sinc_prob: float = 0.8
    first: Stage = Stage(1.0, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), 0.1, (0.2, 3.0), (0.2, 0.7, 0.1), (0.15, 1.5),
                         0.5, (1, 30), (0.05, 3.0), 0.4, (30, 95))
    second: Stage = Stage(0.8, (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), 0.1, (0.2, 1.5), (0.3, 0.4, 0.3), (0.3, 1.2),
                          0.5, (1, 25), (0.05, 2.5), 0.4, (30, 95))

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """H x W x 3 float in [0, 1] -> (H // scale) x (W // scale) x 3, degraded twice."""
        h, w = clean.shape[0] // self.scale, clean.shape[1] // self.scale
        img = torch.from_numpy(np.ascontiguousarray(clean[: h * self.scale, : w * self.scale], np.float32))
        img = img.permute(2, 0, 1)[None]  # 1 x 3 x H x W
        img = self.stage(img, self.first, rng, tuple(img.shape[-2:]))
        img = self.stage(img, self.second, rng, (h, w), jpeg_after=False)  # its JPEG comes with the last resize
        final_sinc = sinc_kernel(21, rng.uniform(np.pi / 3, np.pi)) if rng.random() < self.final_sinc_prob else None
        if rng.random() < 0.5:  # resize back and sinc, then JPEG; or the other way round
            img = jpeg(_filter(resize(img, (h, w), rng), final_sinc), rng.uniform(*self.second.jpeg_quality))
        else:
            img = _filter(resize(jpeg(img, rng.uniform(*self.second.jpeg_quality)), (h, w), rng), final_sinc)
        return img[0].permute(1, 2, 0).clamp(0, 1).numpy()

    def stage(self, img: torch.Tensor, s: Stage, rng: np.random.Generator, reference: tuple[int, int],
              jpeg_after: bool = True) -> torch.Tensor:
        """Blur, resize to a random factor of `reference` (the image's own size in the first round, the
        final size in the second), noise, and JPEG."""
        if rng.random() < s.blur_prob:
            img = _filter(img, self.blur_kernel(s, rng))
        direction = rng.choice(3, p=s.resize_probs)  # up, down, keep
        factor = (rng.uniform(1, s.resize_range[1]) if direction == 0
                  else rng.uniform(s.resize_range[0], 1) if direction == 1 else 1.0)
        img = resize(img, (max(int(reference[0] * factor), 1), max(int(reference[1] * factor), 1)), rng)
        gray = rng.random() < s.gray_noise_prob
        if rng.random() < s.gaussian_noise_prob:
            img = gaussian_noise(img, rng.uniform(*s.noise_sigma) / 255, gray, rng)
        else:
            img = poisson_noise(img, rng.uniform(*s.poisson_scale), gray, rng)
        return jpeg(img, rng.uniform(*s.jpeg_quality)) if jpeg_after else img

    def blur_kernel(self, s: Stage, rng: np.random.Generator) -> np.ndarray:
        size = int(rng.choice(self.kernel_sizes))
        if rng.random() < s.sinc_prob:
            return sinc_kernel(size, rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi))
        kind = KERNELS[rng.choice(len(KERNELS), p=s.kernel_probs)]
        sx = rng.uniform(*s.blur_sigma)
        sy, angle = (sx, 0.0) if kind.endswith("iso") and not kind.endswith("aniso") else \
            (rng.uniform(*s.blur_sigma), rng.uniform(-np.pi, np.pi))
        beta = (rng.uniform(*self.generalized_beta) if kind.startswith("generalized")
                else rng.uniform(*self.plateau_beta) if kind.startswith("plateau") else 1.0)
        return gaussian_kernel(size, sx, sy, angle, beta, plateau=kind.startswith("plateau"))


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float, beta: float = 1.0,
                    plateau: bool = False) -> np.ndarray:
    """A normalised size x size kernel: a (generalized, or plateau-shaped) anisotropic Gaussian of
    standard deviations sigma_x, sigma_y along axes rotated by `angle` (radians)."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inverse = np.linalg.inv(rotation @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rotation.T)
    r = np.arange(size) - size // 2
    grid = np.stack(np.meshgrid(r, r, indexing="xy"), -1)  # size x size x 2: (x, y)
    distance = np.einsum("...i,ij,...j->...", grid, inverse, grid)  # x^T Sigma^-1 x
    kernel = 1 / (1 + distance ** beta) if plateau else np.exp(-0.5 * distance ** beta)
    return (kernel / kernel.sum()).astype(np.float32)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """A normalised circular low-pass (2-D sinc) of angular cutoff `cutoff`: the ringing and overshoot of
    sharpened, resampled images."""
    r = np.hypot(*np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    kernel[size // 2, size // 2] = cutoff ** 2 / (4 * np.pi)
    return (kernel / kernel.sum()).astype(np.float32)


def _filter(img: torch.Tensor, kernel: np.ndarray | None) -> torch.Tensor:
    """Each channel convolved with `kernel` (reflected borders, repeated where the image is smaller than the
    kernel); None leaves the image as it is."""
    if kernel is None:
        return img
    pad = kernel.shape[0] // 2
    padded = F.pad(img, (pad, pad, pad, pad), mode="reflect" if min(img.shape[-2:]) > pad else "replicate")
    weight = torch.from_numpy(kernel)[None, None].expand(img.shape[1], 1, *kernel.shape)
    return F.conv2d(padded, weight, groups=img.shape[1])


def resize(img: torch.Tensor, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A resize by a randomly chosen interpolation (area, bilinear or bicubic)."""
    mode = RESIZE_MODES[rng.integers(len(RESIZE_MODES))]
    return F.interpolate(img, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))


def gaussian_noise(img: torch.Tensor, sigma: float, gray: bool, rng: np.random.Generator) -> torch.Tensor:
    shape = (1, 1, *img.shape[-2:]) if gray else img.shape
    return (img + torch.from_numpy(rng.normal(0, sigma, shape).astype(np.float32))).clamp(0, 1)


def poisson_noise(img: torch.Tensor, scale: float, gray: bool, rng: np.random.Generator) -> torch.Tensor:
    """Shot noise at the image's own intensity levels, scaled: on the luma alone where `gray`."""
    signal = (img * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True) if gray else img
    signal = signal.clamp(0, 1).numpy()
    levels = 2 ** np.ceil(np.log2(max(len(np.unique((signal * 255).round())), 2)))
    noise = rng.poisson(signal * levels) / levels - signal
    return (img + torch.from_numpy((noise * scale).astype(np.float32))).clamp(0, 1)


def jpeg(img: torch.Tensor, quality: float) -> torch.Tensor:
    """A JPEG round trip through Pillow's encoder at `quality` (rounded)."""
    pixels = (img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(round(quality)))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1)[None]
