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

import pandas as pd

from app.attack.attackers import attacker
from app.attack.distill import FIELD_STEPS, FieldAttack
from app.data.tasks import get_task
from app.defense.setting import Setting
from app.study.engine import Store
from app.study.findings import THREATS, best, summarise
from app.study.protocol import Row
from app.study.stages import Search
from app.study.timing import left_to_train


KIND = "field"
SEEDS = 3
# fielded settings: 3 seeds of a field and a long quick pair take about 80 minutes of two cores (an AMD EPYC with
# AVX2, quiet: a field student of 10,000 steps 13 to 25 min of a core, a quick one 3 to 7), so 9 fit about 12 hours
SETTINGS = 9
MEASURED = (THREATS[0], THREATS[2])  # the best in-line setting (output KD) and the best exposed one


def store(out) -> Store:
    return Store(out, KIND, field=True)


def picks(sweep: pd.DataFrame) -> list[tuple[Setting, str, float]]:
    """One teacher's picks of MEASURED whose drop is an effect: (setting, attacker, the drop in noise floors)."""
    return [(Setting.from_row(r), r.attacker, floors(r)) for r in damaged_picks(summarise(sweep))]


def damaged_picks(s: pd.DataFrame) -> list:
    """The summary lines of the answer table's picks of MEASURED (app.study.findings.best at a negligible teacher
    cost) whose drop is an effect, where the search confirmed one."""
    return [r for r in best(s, cheap=True).itertuples() if r.threat in MEASURED and damaged(r)]


def damaged(pick) -> bool:
    """Whether a summary line's student drop is an effect (a gain beyond the floor is not one to test)."""
    return bool(pick.effect and pick.s_dpsnr < 0)


def floors(pick) -> float:
    """A pick's drop in noise floors: the stage's ranking."""
    return pick.s_dpsnr / pick.noise_floor


def largest(ranked: list[tuple]) -> list[tuple]:
    """The SETTINGS largest drops of (drop in noise floors, ...) tuples, the largest first."""
    return sorted(ranked, key=lambda pick: pick[0])[:SETTINGS]


def fielded(s: pd.DataFrame) -> set[tuple[str, str]]:
    """(teacher, threat model) of the summary `s`'s picks that a search of all its teachers fields: a report tells
    a pick the stage has yet to reach from one it leaves out."""
    return {(r.teacher, r.threat) for _, r in largest([(floors(r), r) for r in damaged_picks(s)])}


def field_rows(search: Search, sweep: pd.DataFrame, steps: int = FIELD_STEPS) -> list[tuple[float, Row, Row]]:
    """(the drop in noise floors, the field student's row, the long quick student's row) of each of one
    teacher's picks."""
    out, scale = [], get_task(search.task).scale
    for setting, name, floors in picks(sweep):
        quick = dataclasses.replace(attacker(search.attack, name), steps=steps)
        out.append((floors, search.row(KIND, setting, FieldAttack.of(quick, scale)),
                    search.row(KIND, setting, quick)))
    return out


def wanted(plans: list[Search], sweeps: Store, steps: int = FIELD_STEPS) -> tuple[list[Row], list[Row]]:
    """(the field rows, the long quick rows) of the SETTINGS largest drops, in noise floors, among the picks of
    the teachers with search rows on file, the largest first."""
    top = largest([pick for s in plans if sweeps.rows.get(s.source)
                   for pick in field_rows(s, pd.DataFrame(sweeps.rows[s.source]), steps)])
    return [f for _, f, _ in top], [q for _, _, q in top]


def missing(plans: list[Search], seeds: list[int], sweeps: Store, field: Store, steps: int = FIELD_STEPS) -> str:
    """The field stage's student pairs not on file yet and the time they take here (app.study.timing), or ''."""
    left = left_to_train(sum(wanted(plans, sweeps, steps), []), seeds[:SEEDS], field, "field-stage")
    return f"{left} (field students and quick ones of {steps} steps)" if left else ""
