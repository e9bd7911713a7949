"""The real test sets: benchmark pairs read in place (research licence: never copied into the project).

Not to be confused with app.bench, the speed budgets."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

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
