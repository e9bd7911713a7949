"""How long the student pairs a stage has left take to train here, for --plan: each student's steps timed on its
attacker's own patches without a teacher (a light teacher's answers and the scoring add a few percent; a heavy
teacher's passes, filed on disk or not, are not counted), every pair counted with a clean twin of its own (twins
that rows share train once: an upper bound).
"""
from __future__ import annotations

import dataclasses
import os
import time
from functools import lru_cache

from app.attack.distill import Attack, alone, no_theft
from app.data.tasks import get_task
from app.study.engine import Store, missing_pairs
from app.study.protocol import Row


def left_to_train(rows: list[Row], seeds: list[int], store: Store, stage: str) -> str:
    """'N <stage> student pairs, at most H h ...' for the (row, seed) pairs of `rows` not on file in `store` ('' if
    none)."""
    left = [(row, n) for row in rows if (n := missing_pairs([row], seeds, store))]
    if not left:
        return ""
    hours = sum(2 * n * row.attack.steps * step_seconds(row.task, alone(row.attack)) for row, n in left) / 3600
    cores = os.cpu_count() or 1  # the embedded Ray runs a task per core
    return (f"{sum(n for _, n in left)} {stage} student pairs, at most {hours:.1f} h of training on one core here, "
            f"{hours / cores:.1f} h on its {cores} cores")


def step_seconds(task_name: str, attack: Attack, timed: int = 10) -> float:
    """One training step of this student here (a feature loss adds little to a step)."""
    return _timed(task_name, dataclasses.replace(attack, steps=timed))


@lru_cache(maxsize=None)
def _timed(task_name: str, attack: Attack) -> float:
    run = no_theft(get_task(task_name), attack, [0], every=attack.steps)
    next(run)  # its patches made
    start = time.perf_counter()
    next(run)
    return (time.perf_counter() - start) / attack.steps
