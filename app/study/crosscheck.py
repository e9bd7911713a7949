"""Stored rows on another kind of CPU: re-measure one, and where it comes out the same, record this machine's
fingerprint as an alias of the rows' recipe (app.study.recipe.ALIASES).

The fingerprint is exact on the machine kind that measured the rows, but another CPU rounds differently
(its vector units, its BLAS), so the same code fingerprints otherwise there and every stored row would look
stale. Here the cheapest stored row of each teacher and group of attackers is measured again, with its seed,
and compared to the file. What involves no training (the input, the teacher with and without the defense,
the served change) must agree to float rounding (EXACT). A student does not: training amplifies rounding
(measured here: 0.1 dB between one and two torch threads on one machine), so its PSNRs must agree as two
students of different seeds would: within two standard deviations of their difference, 2 sqrt(2) times the
spread of such students: the teacher's noise floor, or the row's own spread over its seeds on file where that is
larger (a student taught from features amplified a hundredfold, or a field student, varies with its seed far more
than the clean quick students the floor is made of). Only then is the alias recorded, with the change found;
otherwise the rows stay stale here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from app.attack.attackers import attacker
from app.attack.distill import FieldAttack
from app.data.tasks import get_task
from app.defense.setting import Setting
from app.devices import machine
from app.study import notheft, recipe
from app.study.engine import Store, records, row_key
from app.study.findings import noise_floors
from app.study.protocol import Row, clean_student_scores, measure
from app.study.runner import stores
from app.study.stages import Search


EXACT = dict(input_psnr=1e-4, teacher_clean_psnr=1e-4, teacher_psnr=1e-4, teacher_ssim=1e-6, served_rms=1e-7)
TRAINED = ("student_clean_psnr", "student_psnr")
SEEDS_APART = 2 * math.sqrt(2)  # two std of the difference of two students with the noise floor's spread


def groups(out) -> list[Store]:
    """The stores whose rows carry a fingerprint of their own (the no-theft rows and the cost grid share the
    search's)."""
    return [store for store in stores(out) if store.kind != notheft.KIND]


def stored_row(search: Search, record: dict) -> tuple[Row, int] | None:
    """The row and seed a stored record measured, rebuilt from its columns: None unless it hashes to the
    record's key (a baseline, say, records the setting it calibrated, not the one it was asked for)."""
    quick = attacker(dataclasses.replace(search.attack, steps=int(record["budget"])), record["attacker"])
    attack = FieldAttack.of(quick, get_task(search.task).scale) if record["student"].startswith("field") else quick
    setting = dataclasses.replace(Setting.from_row(pd.Series(record)), directions=record.get("directions") or "top")
    row = search.row(record["stage"], setting, attack, record["defense"])
    return (row, int(record["seed"])) if row_key(row, int(record["seed"])) == record["key"] else None


def remeasured(search: Search, on_file: list[dict]) -> tuple[dict, dict, list[dict]] | None:
    """(the stored record, the same row measured here, the row's records of every seed on file) for the cheapest
    record that can be rebuilt."""
    for record in sorted(on_file, key=lambda r: int(r["budget"])):
        if rebuilt := stored_row(search, record):
            row, seed = rebuilt
            keys = {row_key(row, s) for s in {int(r["seed"]) for r in on_file}}
            seeds = [r for r in on_file if r["key"] in keys]
            return record, measure(row, [seed], clean_student_scores(row, seed))[0], seeds
    return None


def seed_spread(records: list[dict], column: str) -> float:
    """The std over seeds of `column` among one row's records (0 with fewer than two: the floor alone judges)."""
    values = [float(r[column]) for r in records]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def crosscheck(plans: list[Search], out) -> Iterator[str]:
    """For each teacher and group whose stored rows look stale here only by their fingerprint: re-measure one
    and, when it agrees, record the alias. Says what it found, a line each, as it goes."""
    for search in plans:
        for store in groups(out):
            path = store.path(search.source)
            if not path.exists():
                continue
            on_file = pd.read_csv(path)
            stored, here = set(on_file.recipe), store.stamp(search.task, search.source)
            floor = noise_floors(pd.read_csv(Store(out).path(search.source))).get(str(search.source), math.nan)
            why = ("current here" if stored == {here["recipe"]} else "rows of several recipes" if len(stored) > 1
                   else "its teacher's weights changed" if set(on_file.teacher_sha) != {here["teacher_sha"]}
                   else "no noise floor yet to judge its students by" if math.isnan(floor) else "")
            if why:
                yield f"{path.name}: {why} (recipe {', '.join(sorted(stored))}; here {here['recipe']})"
                continue
            yield agreement(search, store, records(on_file), path.name, floor)


def agreement(search: Search, store: Store, on_file: list[dict], name: str, floor: float) -> str:
    """Re-measure one of a file's rows; record this machine's fingerprint as an alias of their recipe if it
    agrees."""
    found = remeasured(search, on_file)
    if found is None:
        return f"{name}: no stored row could be rebuilt to re-measure"
    record, measured, seeds = found
    exact = {c: abs(float(record[c]) - measured[c]) for c in EXACT}
    apart = {c: abs(float(record[c]) - measured[c]) for c in TRAINED}
    own = {c: seed_spread(seeds, c) for c in TRAINED}
    allowed = {c: SEEDS_APART * max(floor, own[c]) for c in TRAINED}
    worst = max(TRAINED, key=lambda c: apart[c] / allowed[c] if allowed[c] else math.inf)  # the nearest to failing
    trained = max(apart.values())
    what = (f"{name}: a row of its {record['stage']} stage ({record['attacker']}, seed {record['seed']}) measured "
            f"again: teacher and input within {max(exact.values()):.1e}, students within {trained:.3f} dB "
            f"({worst} {apart[worst]:.3f} dB, allowed {allowed[worst]:.3f} dB: two students apart, by the larger of "
            f"the noise floor {floor:.3f} dB and the row's spread over its {len(seeds)} seed(s) on file, "
            f"{own[worst]:.3f} dB)")
    if any(exact[c] > EXACT[c] for c in EXACT) or apart[worst] > allowed[worst]:
        return f"{what}: the recipe differs; no alias"
    fingerprint = recipe.fingerprint_here(search.task, search.source, store.attackers, store.field)
    line = pd.DataFrame([dict(fingerprint=fingerprint, recipe=record["recipe"], teacher=str(search.source),
                              group=store.kind, machine=machine(), student_change_db=round(trained, 4),
                              noise_floor_db=round(floor, 4))])
    line.to_csv(recipe.ALIASES, mode="a", header=not recipe.ALIASES.exists(), index=False)
    recipe.fingerprint_here.cache_clear()  # a field fingerprint holds the search's recipe, which this may change
    return f"{what}: the same recipe, alias recorded"
