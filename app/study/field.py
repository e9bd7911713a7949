"""The field stage: does the damage survive a thief who trains as the field does? Per teacher, the answer
table's best in-line setting under output KD and its best exposed setting under feature KD (each with the
attacker it was found with), where the quick student's drop there is an effect (beyond the noise floor and
its spread: where there is no damage, none can survive); of these, the SETTINGS largest drops in noise floors
(fewer settings before fewer seeds: the stage must fit about 12 hours of two cores). Each is taught to a field
student (app.attack.field) of FIELD_STEPS steps, and to the quick student at the same length (the budget curve
extended), first three seeds, each beside its clean twin. Rows live in field_<teacher>.csv under a fingerprint
that covers both students. Every fielded setting's field students come before the long quick ones
(app.study.runner), the largest drop first: a stop leaves the answer table's column filled where it matters most.
"""
from __future__ import annotations

import dataclasses
import os
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
SETTINGS = 9  # fielded settings: 3 seeds of a field and a long quick pair take about 80 minutes of two cores (an
# AMD EPYC with AVX2, quiet: a field student of 10,000 steps 13 to 25 min of a core, a quick one 3 to 7), so 9 fit ~12 h
MEASURED = (THREATS[0], THREATS[2])  # the best in-line setting (output KD) and the best exposed one


def store(out) -> Store:
    return Store(out, KIND, field=True)


def picks(sweep: pd.DataFrame) -> list[tuple[Setting, str, float]]:
    """The answer table's picks of MEASURED (app.study.findings.best at a negligible teacher cost) whose drop is
    an effect: (setting, attacker, the drop in noise floors), where the search confirmed one."""
    chosen = best(summarise(sweep), cheap=True).set_index("threat")
    return [(Setting.from_row(r), r.attacker, r.s_dpsnr / r.noise_floor) for t in MEASURED if t in chosen.index
            and damaged(r := chosen.loc[t])]


def damaged(pick) -> bool:
    """Whether a summary line's student drop is an effect (a gain beyond the floor is not one to test)."""
    return bool(pick.effect and pick.s_dpsnr < 0)


def field_rows(search: Search, sweep: pd.DataFrame, steps: int = FIELD_STEPS) -> list[tuple[float, Row, Row]]:
    """(the drop in noise floors, the field student's row, the long quick student's row) of each of one
    teacher's picks."""
    out = []
    for setting, name, floors in picks(sweep):
        quick = dataclasses.replace(attacker(search.attack, name), steps=steps)
        out.append((floors, search.row(KIND, setting, FieldAttack(**dataclasses.asdict(quick))),
                    search.row(KIND, setting, quick)))
    return out


def wanted(plans: list[Search], sweeps: Store, steps: int = FIELD_STEPS) -> tuple[list[Row], list[Row]]:
    """(the field rows, the long quick rows) of the SETTINGS largest drops, in noise floors, among the picks of
    the teachers with search rows on file, the largest first."""
    ranked = sorted((pick for s in plans if sweeps.rows.get(s.source)
                     for pick in field_rows(s, pd.DataFrame(sweeps.rows[s.source]), steps)), key=lambda p: p[0])
    top = ranked[:SETTINGS]
    return [f for _, f, _ in top], [q for _, _, q in top]


def missing(plans: list[Search], seeds: list[int], sweeps: Store, field: Store, steps: int = FIELD_STEPS) -> str:
    """The field stage's student pairs not on file yet, with the time their students take here (each pair a
    defended-taught student and at most one clean twin), or '' when none is missing."""
    left = [(row, n) for row in sum(wanted(plans, sweeps, steps), [])
            if (n := missing_pairs([row], seeds[:SEEDS], field))]
    pairs = sum(n for _, n in left)
    seconds = sum(2 * n * steps * step_seconds(row.task, alone(row.attack))
                  for row, n in left)  # one timing per task and student: a feature loss adds little to a step
    cores = os.cpu_count() or 1  # the embedded Ray runs a task per core
    return (f"{pairs} field-stage student pairs (field students and quick ones of {steps} steps), about "
            f"{seconds / 3600:.1f} h of training on one core here, {seconds / 3600 / cores:.1f} h on its {cores} "
            "cores") if left else ""


@lru_cache(maxsize=None)
def step_seconds(task_name: str, attack: Attack, timed: int = 10) -> float:
    """One training step of this student here, timed on its attacker's own patches without a teacher (whose
    answers, and the scoring, add a few percent to 10,000 steps)."""
    run = no_theft(get_task(task_name), dataclasses.replace(attack, steps=timed), [0], every=timed)
    next(run)  # its patches made
    start = time.perf_counter()
    next(run)
    return (time.perf_counter() - start) / timed
