"""The lab's judgement of one Distill click, by the numbers in app.study.thresholds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from app.defense.bound import bound_db, rms
from app.lab.scenes import DuelScores, Scene
from app.study import thresholds


Outcome = Literal["no reference", "not learned", "costly", "protects", "weak", "none"]


@dataclass(frozen=True)
class Verdict:
    """The lab's judgement of one Distill click, with the numbers it rests on (dB; drops and
    costs are positive when the defended side is worse)."""

    outcome: Outcome
    student_drop: float = float("nan")
    teacher_cost: float = float("nan")
    teacher_ssim_change: float = float("nan")  # defended - clean
    bound: float = float("nan")  # the output-KD bound on this image (dB, <= 0; app.defense.bound)
    measure: str = thresholds.MEASURES[0]  # what the students are scored against: one of MEASURES


def verdict(s: DuelScores, bound: float = float("nan")) -> Verdict:
    """Judge a pair of students, refusing to when the clean-taught student learned nothing: a drop
    counts as protection only when the teacher did not pay for it on the ground truth (app.study.thresholds).
    Students are scored against the ground truth where the teacher beats its input there; a teacher that
    does not (a GAN teacher, made to look sharp) is what a thief wants to copy, so its students are scored
    by fidelity to its clean answer, and "learned" means closer to it than the input is."""
    if s.clean_student is None:
        return Verdict("no reference")
    truth = s.teacher.psnr > s.input.psnr
    measure = thresholds.MEASURES[0 if truth else 1]
    base, clean, defended = ((s.input, s.clean_student, s.defended_student) if truth else
                             (s.fidelity.input, s.fidelity.clean_student, s.fidelity.defended_student))
    if clean.psnr <= base.psnr:
        return Verdict("not learned", measure=measure)
    drop, cost = clean.psnr - defended.psnr, s.teacher.psnr - s.defended_teacher.psnr
    ssim_change = s.defended_teacher.ssim - s.teacher.ssim
    if drop >= thresholds.PROTECTS_DB:
        costly = cost >= thresholds.DAMAGES_PSNR_DB or -ssim_change >= thresholds.DAMAGES_SSIM
        outcome = "costly" if costly else "protects"
    else:
        outcome = "weak" if drop >= thresholds.WEAK_DB else "none"
    return Verdict(outcome, drop, cost, ssim_change, bound, measure)


def image_bound(scene: Scene, clean: np.ndarray, defended: np.ndarray, clean_student: np.ndarray) -> float:
    """The output-KD bound on this image: how much PSNR a least-squares student with the clean-taught
    student's error could lose when the teacher's answers move as they did here (nan: no reference)."""
    if scene.target is None:
        return float("nan")
    error = rms(torch.from_numpy(clean_student - scene.target))
    return bound_db(error, rms(torch.from_numpy(defended - clean))) if error > 0 else float("nan")
