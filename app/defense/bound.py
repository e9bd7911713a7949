"""The output-KD bound: how far an output-distilling student can move, given how far the answers
moved. DERIVATION says why it holds, in the words RESULTS.md and the About tab print."""
from __future__ import annotations

import math

import torch


DERIVATION = """An output-distilling attacker fits a student to the teacher's answers t on its queries. With a square
loss and a student class that is convex (a linear model, or any model linear in its weights), the fitted
student's outputs are the projection P(t) of the answers onto the set of outputs the class can produce.
Projection onto a closed convex set is non-expansive: ||P(t') - P(t)|| <= ||t' - t||. So when the defense
changes the answers from t to t', the defended-taught student's outputs move by at most the served change,
and by the triangle inequality its RMS error e against any target rises by at most d = RMS(t' - t). In
PSNR, the most it can lose is 20 log10(e / (e + d)) dB: the **output-KD bound**, computed per setting from the
clean-taught student's RMS error e and the served change d on the attacker's own queries. A deep student
is not a convex class, so it may land below the bound: then the training, not the answers alone,
carries the damage. Above the bound (closer to zero) it learned through part of the change."""


def rms(diff: torch.Tensor) -> float:
    """Root mean square over every element (images in [0, 1])."""
    return float(diff.double().square().mean().sqrt())


def bound_db(student_rms: float, served_rms: float) -> float:
    """The most PSNR (dB, negative) a student with RMS error `student_rms` can lose when its error
    rises by the full served change: 20 log10(e / (e + delta))."""
    return 20 * math.log10(student_rms / (student_rms + served_rms))
