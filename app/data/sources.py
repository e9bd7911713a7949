"""Permissively licensed clean images, split between teachers and attackers, and patch sampling.

Teachers and attackers never share an image, and neither ever sees a benchmark image.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from app.data.images import cap_size, load_rgb


# name -> (package, path inside it); licences in assets/PROVENANCE.md
SOURCES = {
    "astronaut": ("skimage", "data/astronaut.png"),  # public domain (NASA)
    "rocket": ("skimage", "data/rocket.jpg"),  # public domain (SpaceX)
    "immunohistochemistry": ("skimage", "data/ihc.png"),  # no known copyright restrictions
    "brick": ("skimage", "data/brick.png"),  # CC0 (cc0textures)
    "grass": ("skimage", "data/grass.png"),  # CC0 (cc0textures)
    "gravel": ("skimage", "data/gravel.png"),  # CC0 (cc0textures)
    "kodim23": ("sporco", "data/kodim23.png"),  # BSD-3 (sporco)
    "sail": ("sporco", "data/sail.png"),  # BSD-3 (sporco)
    "barbara": ("sporco", "data/barbara.png"),  # BSD-3 (sporco)
    "monarch": ("sporco", "data/monarch.png"),  # BSD-3 (sporco)
    "tulips": ("sporco", "data/tulips.png"),  # BSD-3 (sporco)
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),  # public domain
}
TEACHER_IMAGES = ("astronaut", "rocket", "immunohistochemistry", "brick", "grass", "gravel",
                  "kodim23", "sail", "barbara")
ATTACKER_IMAGES = ("monarch", "tulips", "grace_hopper")
# held out from both: the app's examples (assets/chelsea.png, assets/coffee.png)
HELD_OUT_IMAGES = ("chelsea", "coffee")
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def source_path(name: str) -> Path:
    """Locate a bundled image inside its package without importing the package."""
    package, rel = SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"image {name!r} needs the package {package!r} (see requirements.txt)")
    return Path(spec.submodule_search_locations[0]) / rel


@lru_cache(maxsize=None)
def clean_image(name: str, max_side: int = 512) -> np.ndarray:
    """A training or query image as float RGB, longest side at most `max_side`."""
    return cap_size(load_rgb(source_path(name)), max_side)


@lru_cache(maxsize=None)
def held_out_image(name: str, max_side: int = 512) -> np.ndarray:
    """One of the app's example images, which neither teachers nor attackers train on."""
    return cap_size(load_rgb(ASSETS / f"{name}.png"), max_side)


class PairPool:
    """Degraded/clean full images made once from seeds, sampled as random aligned patches."""

    def __init__(self, task, names, variants: int, seed: int, max_side: int = 512):
        rng = np.random.default_rng(seed)
        self.task = task
        self.pairs = [task.make_pair(clean_image(n, max_side), int(rng.integers(2**31)))
                      for n in names for _ in range(variants)]

    def batch(self, rng: np.random.Generator, size: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` random patches: degraded `patch` px wide, clean `patch * scale` px wide."""
        s, xs, ys = self.task.scale, [], []
        for _ in range(size):
            lq, gt = self.pairs[rng.integers(len(self.pairs))]
            i, j = rng.integers(lq.shape[0] - patch + 1), rng.integers(lq.shape[1] - patch + 1)
            x, y = lq[i:i + patch, j:j + patch], gt[i * s:(i + patch) * s, j * s:(j + patch) * s]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        to_t = lambda arr: torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).contiguous()
        return to_t(xs), to_t(ys)
