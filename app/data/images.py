"""Image I/O: every image in the lab is float32 HxWx3 in [0, 1], whatever the file was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


# Large inputs are downscaled to this longest side before any work (stated in the UI).
MAX_SIDE = 512


def to_float_rgb(img: Image.Image, max_side: int | None = None) -> np.ndarray:
    """Any PIL image (grey, palette, RGBA, 16-bit, EXIF-rotated) as float RGB in [0, 1].

    With `max_side`, large images shrink inside PIL first (JPEG even decodes at reduced scale),
    so an 8000 x 8000 upload never becomes a multi-gigabyte float array.
    """
    if max_side:
        img.draft("RGB", (max_side, max_side))
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I"):  # 16/32-bit integer grey: scale by its bit depth, not by 255
        grey = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(grey / (255.0 if img.mode == "I" and grey.max() <= 255 else 65535.0))
    elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    if img.mode == "F":
        return np.repeat(np.clip(np.asarray(img, dtype=np.float32), 0, 1)[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Read an image file as float RGB in [0, 1], optionally shrunk to `max_side`."""
    with Image.open(path) as img:
        return to_float_rgb(img, max_side)


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
