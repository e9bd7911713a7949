"""The real test sets: benchmark pairs read in place (research licence: never copied into the project),
and a researcher's own pairs (a folder of the same layout), checked before a search relies on them.

Not to be confused with app.bench, the speed budgets."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from app.data.images import load_rgb


BENCHMARKS = Path(os.environ.get("ASVP_BENCHMARKS", Path(__file__).resolve().parents[3] / "shared" / "benchmarks"))


def benchmark_pairs(task, limit: int | None = None, seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (name, degraded, target) for a task's dev split, sorted by name.

    Tasks without real ground truth get synthetic pairs: the targets of another benchmark,
    degraded by the task itself with seed `seed + index`.
    """
    folder = BENCHMARKS / (task.synthetic_eval_from or task.benchmark)
    if not (folder / "target").is_dir():
        raise FileNotFoundError(f"benchmark folder {folder} not found: set ASVP_BENCHMARKS")
    names = sorted(p.name for p in (folder / "target").iterdir())[:limit]
    for i, name in enumerate(names):
        target = load_rgb(folder / "target" / name)
        if task.synthetic_eval_from:
            degraded, target = task.make_pair(target, seed + i)
        else:
            degraded = load_rgb(folder / "input" / name)
        yield name, degraded, target


MIN_PAIR_SIDE = 7  # SSIM's window: a smaller image cannot be scored
LISTED = 8  # names a message lists before "..."


class PairsError(ValueError):
    """A folder of pairs that cannot serve as a benchmark, and why, in words."""


def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _names(names) -> str:
    names = sorted(names)
    return ", ".join(names[:LISTED]) + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _read(path: Path, root: Path) -> np.ndarray:
    try:
        return load_rgb(path)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PairsError(f"{path.relative_to(root)} is not an image this lab can read ({type(e).__name__})") from None


def folder_pairs(folder: str | os.PathLike, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, degraded, target) for every pair of `folder`: input/ and target/ with matching file names,
    each target exactly `scale` times its input (the lab's SR teachers upscale by a whole factor), sorted
    by name. Anything else raises PairsError saying what to fix."""
    root = Path(folder)
    if not root.is_dir():
        raise PairsError(f"{root} is not a folder")
    missing = [sub for sub in ("input", "target") if not (root / sub).is_dir()]
    if missing:
        raise PairsError(f"{root} needs input/ and target/ folders of matching file names; it has no "
                         f"{' and no '.join(f'{m}/' for m in missing)}")
    inputs, targets = _files(root / "input"), _files(root / "target")
    for there, here, side in ((targets, inputs, "input"), (inputs, targets, "target")):
        if lonely := set(here) - set(there):
            raise PairsError(f"{len(lonely)} file(s) of {side}/ have no partner of the same name in "
                             f"{'target' if side == 'input' else 'input'}/: {_names(lonely)}")
    if not inputs:
        raise PairsError(f"{root}/input and {root}/target hold no files")
    pairs = []
    for name in inputs:
        degraded, target = _read(inputs[name], root), _read(targets[name], root)
        (h, w), want = degraded.shape[:2], (degraded.shape[0] * scale, degraded.shape[1] * scale)
        if target.shape[:2] != want:
            raise PairsError(f"target/{name} is {target.shape[1]} x {target.shape[0]} px but its input is {w} x {h}: "
                             + (f"the task upscales x{scale}, so the target must be {want[1]} x {want[0]}" if scale > 1
                                else "the task keeps the size, so both must be the same"))
        if min(h, w) < MIN_PAIR_SIDE:
            raise PairsError(f"input/{name} is {w} x {h} px: too small to score (SSIM needs {MIN_PAIR_SIDE} px a side)")
        pairs.append((name, degraded, target))
    return pairs


@lru_cache(maxsize=None)
def pairs_checksum(folder: str) -> str:
    """The pairs' file names and bytes, hashed: rows scored on other pairs are not the same rows."""
    digest, root = hashlib.sha256(), Path(folder)
    for sub in ("input", "target"):
        for name, path in _files(root / sub).items():
            digest.update(f"{sub}/{name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
