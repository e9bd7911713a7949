"""Image I/O: every image in the lab is float32 HxWx3 in [0, 1], whatever the file was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Large inputs are downscaled to this longest side before any work (stated in the UI).
MAX_SIDE = 512


def to_float_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL image (grey, palette, RGBA, 16-bit, EXIF-rotated) to float RGB in [0, 1]."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / peak, 0, 1)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as float RGB in [0, 1]."""
    with Image.open(path) as img:
        return to_float_rgb(img)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def cap_size(img: np.ndarray, max_side: int = MAX_SIDE, multiple: int = 1) -> np.ndarray:
    """Downscale so the longest side is at most `max_side`; crop to a multiple of `multiple`."""
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img = np.asarray(Image.fromarray(to_uint8(img)).resize(size, Image.LANCZOS), np.float32) / 255.0
        h, w = img.shape[:2]
    return img[: h - h % multiple, : w - w % multiple]
