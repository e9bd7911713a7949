"""The field stage: does the damage survive a thief who trains as the field does? Per teacher, the answer
table's best in-line setting under output KD and its best exposed setting under feature KD (each with the
attacker it was found with), taught to a field student (app.attack.field) of FIELD_STEPS steps, and to the
quick student at the same length (the budget curve extended), first three seeds, each beside its clean
twin. Rows live in field_<teacher>.csv under a fingerprint that covers both students. Every teacher's field
students come before the long quick ones (app.study.runner): a stop leaves the answer table's column filled.
"""
from __future__ import annotations

import dataclasses
import time
from functools import lru_cache

import pandas as pd

from app.attack.attackers import attacker
from app.attack.distill import FIELD_STEPS, Attack, FieldAttack, alone, no_theft
from app.data.tasks import get_task
from app.defense.setting import Setting
from app.study.engine import Store, missing_pairs
from app.study.findings import THREATS, best, summarise
from app.study.protocol import Row
from app.study.stages import Search


KIND = "field"
SEEDS = 3
MEASURED = (THREATS[0], THREATS[2])  # the best in-line setting (output KD) and the best exposed one


def store(out) -> Store:
    return Store(out, KIND, field=True)


def picks(sweep: pd.DataFrame) -> list[tuple[Setting, str]]:
    """The answer table's picks of MEASURED (app.study.findings.best at a negligible teacher cost): (setting,
    attacker), where the search confirmed one."""
    chosen = best(summarise(sweep), cheap=True).set_index("threat")
    return [(Setting.from_row(chosen.loc[t]), chosen.loc[t].attacker) for t in MEASURED if t in chosen.index]


def field_rows(search: Search, sweep: pd.DataFrame, steps: int = FIELD_STEPS) -> tuple[list[Row], list[Row]]:
    """(the field students' rows, the long quick students' rows) of one teacher."""
    fields, quicks = [], []
    for setting, name in picks(sweep):
        quick = dataclasses.replace(attacker(search.attack, name), steps=steps)
        fields.append(search.row(KIND, setting, FieldAttack(**dataclasses.asdict(quick))))
        quicks.append(search.row(KIND, setting, quick))
    return fields, quicks


def wanted(plans: list[Search], sweeps: Store, steps: int = FIELD_STEPS) -> tuple[list[Row], list[Row]]:
    """(every teacher's field rows, every teacher's long quick rows), of the teachers with search rows on file."""
    both = [field_rows(s, pd.DataFrame(sweeps.rows[s.source]), steps) for s in plans if sweeps.rows.get(s.source)]
    return [row for fields, _ in both for row in fields], [row for _, quicks in both for row in quicks]


def missing(plans: list[Search], seeds: list[int], sweeps: Store, field: Store, steps: int = FIELD_STEPS) -> str:
    """The field stage's student pairs not on file yet, with the time their students take here (each pair a
    defended-taught student and at most one clean twin), or '' when none is missing."""
    left = [(row, n) for row in sum(wanted(plans, sweeps, steps), [])
            if (n := missing_pairs([row], seeds[:SEEDS], field))]
    pairs = sum(n for _, n in left)
    seconds = sum(2 * n * steps * step_seconds(row.task, alone(row.attack))
                  for row, n in left)  # one timing per task and student: a feature loss adds little to a step
    return (f"{pairs} field-stage student pairs (field students and quick ones of {steps} steps), about "
            f"{seconds / 3600:.1f} h of training here, one task at a time") if left else ""


@lru_cache(maxsize=None)
def step_seconds(task_name: str, attack: Attack, timed: int = 10) -> float:
    """One training step of this student here, timed on its attacker's own patches without a teacher (whose
    answers, and the scoring, add a few percent to 10,000 steps)."""
    run = no_theft(get_task(task_name), dataclasses.replace(attack, steps=timed), [0], every=timed)
    next(run)  # its patches made
    start = time.perf_counter()
    next(run)
    return (time.perf_counter() - start) / timed
