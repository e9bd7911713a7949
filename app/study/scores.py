"""Scores of what a row compares on its pairs: a model's output, or the degraded input itself, against the ground
truth and (given them) against the clean teacher's answers."""
from __future__ import annotations

import numpy as np
import torch

from app.data.metrics import score
from app.defense.bound import rms
from app.teachers.networks import restore


def _average(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) for m in ("psnr", "ssim")}


def _fidelity(outs: list[np.ndarray], answers: list[np.ndarray] | None, task) -> dict[str, float]:
    """PSNR/SSIM to the clean teacher's `answers` (none without them): how closely a copy matches the teacher."""
    if answers is None:
        return {}
    return {f"fidelity_{m}": v for m, v in _average([score(o, a, task) for o, a in zip(outs, answers)]).items()}


def mean_score(model, pairs, task, answers: list[np.ndarray] | None = None) -> dict[str, float]:
    """`scored`: the model's outputs on the pairs."""
    return scored([restore(model, x) for x, _ in pairs], pairs, task, answers)


def scored(outs: list[np.ndarray], pairs, task, answers: list[np.ndarray] | None = None) -> dict[str, float]:
    """PSNR/SSIM of outputs on the pairs by the task's conventions, the plain RGB RMS error the output-KD bound
    speaks of, and given the clean teacher's `answers` on the pairs, the fidelity to them."""
    return {**_average([score(out, y, task) for out, (_, y) in zip(outs, pairs)]),
            "rms": rms(torch.cat([torch.from_numpy(out - y).flatten() for out, (_, y) in zip(outs, pairs)])),
            **_fidelity(outs, answers, task)}


def input_scores(pairs, task, answers: list[np.ndarray] | None = None) -> dict[str, float]:
    """What the user already has: the degraded input (bicubic-upsampled for SR), scored alike."""
    outs = [task.input_baseline(x, y.shape) for x, y in pairs]
    return {**_average([score(out, y, task) for out, (_, y) in zip(outs, pairs)]), **_fidelity(outs, answers, task)}
