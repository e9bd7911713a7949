"""A Distill click to take away: one zip with the settings, every image, the metrics table and the
verdict, so a result can be shown, checked or rerun elsewhere. A server keeps the newest EXPORTS_KEPT zips
(the app hands each to gradio, which serves its own copy), so a long-running Space does not fill its disk."""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from app.data.images import to_uint8


EXPORTS_KEPT = 64
METRICS_HEADER = ["output", "PSNR (dB)", "SSIM", "delta vs clean twin", "PSNR to teacher (dB)", "SSIM to teacher"]


def session_zip(path: Path, settings: dict, images: dict[str, np.ndarray | None], metrics: list[list[str]],
                verdict: str) -> Path:
    """Write settings.json, <name>.png per image (None: left out, e.g. no ground truth), metrics.csv
    and verdict.md into the zip at `path`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("settings.json", json.dumps(settings, indent=2))
        for name, image in images.items():
            if image is not None:
                png = io.BytesIO()
                Image.fromarray(to_uint8(image)).save(png, format="PNG")
                bundle.writestr(f"{name}.png", png.getvalue())
        table = io.StringIO()
        csv.writer(table).writerows([METRICS_HEADER, *metrics])
        bundle.writestr("metrics.csv", table.getvalue())
        bundle.writestr("verdict.md", verdict + "\n")
    return path


def new_export_path(name: str = "asvp-session.zip") -> Path:
    """A fresh path for a zip named `name` under this process's export folder, the oldest beyond
    EXPORTS_KEPT removed first."""
    made = sorted(_exports().iterdir(), key=lambda p: p.stat().st_mtime)
    for old in made[:max(0, len(made) - EXPORTS_KEPT + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_exports())) / name


@lru_cache(maxsize=1)
def _exports() -> Path:
    return Path(tempfile.mkdtemp(prefix="asvp-exports-"))
