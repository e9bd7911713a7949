"""The attackers the search measures and the app offers, by name, and each task's own attacker.

Each name in ATTACKERS is the `Attack.label` of the task's own attacker changed as it says.
"""
from __future__ import annotations

import dataclasses

from app.attack.distill import Attack


# SR students need plain convs and more steps to get past bicubic-plus-a-linear-filter; an adaptive
# SR attacker keeps the answers sharp (a low-pass would erase what SR adds) and relies on the trim
SR_ATTACK = Attack(steps=400, dilated=False, leak=0.1, lowpass_sigma=0.0)
# rain streaks (up to 40 px long) and water casts need the wider view of a deeper dilated stack (31
# px instead of 17); the derain attacker also fits with L2, since L1 treats the sparse bright streaks
# as outliers and leaves them half-removed. Haze and low light do as well or better with 4 layers
ATTACKS = {"sr_x2": SR_ATTACK, "sr_x4": SR_ATTACK, "sr_real_x4": SR_ATTACK, "underwater": Attack(depth=7),
           "derain": Attack(depth=7, loss="l2")}


def attack_for(task_name: str) -> Attack:
    """The attacker a task expects (the app's Distill and the sweep's students)."""
    return ATTACKS.get(task_name, Attack())


# changes to a task's own attacker, by the name each one's label takes
ATTACKERS = {
    "output L1": dict(kind="output", loss="l1"),
    "output L2": dict(kind="output", loss="l2"),
    **{f"feature {loss.upper()} x{w:g}": dict(kind="feature", feature_loss=loss, feature_weight=w)
       for loss in ("l1", "mse") for w in (0.1, 1.0, 10.0)},
    "feature L1 x1, normalised": dict(kind="feature", feature_weight=1.0, normalise=True),
    "FitNet MSE": dict(kind="fitnet", feature_loss="mse"),
    "adaptive": dict(kind="adaptive"),
}


# attackers who know the defense (app.attack.informed), offered beside the searched ones and measured on
# their own: the search's stages and the recipe's fingerprint cover ATTACKERS alone
INFORMED = {
    "feature ASVP-AWARE x1": dict(kind="feature", feature_loss="asvp-aware", feature_weight=1.0),
    "feature AFFINITY x1": dict(kind="feature", feature_loss="affinity", feature_weight=1.0),
}
NAMED = {**ATTACKERS, **INFORMED}


def attacker(base: Attack, name: str) -> Attack:
    """A named attacker built on a task's own (its student, budget and queries stay)."""
    if name not in NAMED:
        raise ValueError(f"unknown attacker {name!r}; choose one of {', '.join(NAMED)}")
    return dataclasses.replace(base, **NAMED[name])


def own_attacker(task_name: str) -> str:
    """The name of the task's own attacker (output KD with the task's loss)."""
    return attack_for(task_name).label
