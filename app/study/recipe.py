"""The student recipe, known by what it computes: a short seeded run per teacher, hashed.

A row of the search is current while its `recipe` equals the fingerprint of its teacher here. The
run touches every number a row depends on: the attacker's query images (loading, resizing,
degradation), the teacher's answers and exposed features under the defense op in each layout,
placement and direction, the output-noise baseline, a few steps of the student of every attacker the rows use
and the metrics on a held-out pair. So a refactor that changes no number keeps every committed row,
and a change of numbers anywhere on that path (a one-pixel change of a resize included) marks them
stale. Numbers are rounded before hashing, so only a change beyond float rounding counts.

Another kind of CPU rounds differently, and a few students (a normalising attacker's first Adam steps)
amplify that past any rounding, so the same code has another fingerprint there. app.study.crosscheck
re-measures stored rows on such a machine; where they come out the same, its fingerprint is recorded in
ALIASES as the recipe those rows carry.
"""
from __future__ import annotations

import dataclasses
import hashlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from app.attack.attackers import ATTACKERS, attack_for, attacker
from app.attack.distill import FieldAttack, ask_teacher, asked, attacker_queries, taught
from app.data.sources import held_out_image
from app.data.tasks import get_task
from app.defense.baselines import output_noise
from app.defense.setting import Setting
from app.study.scores import input_scores, mean_score
from app.teachers.sessions import Source, session_teacher


DECIMALS = 4  # a one-pixel resize change moves images by ~1/255; float rounding stays near 1e-7
PROBE = dict(steps=3, queries=4, patch=16, variants=1, batch=2)  # an attacker at a size that runs in ms
NOISE_SIGMA = 0.01
HELD_OUT_SIDE = 64  # the scored pair's clean side
SEARCHED = tuple(ATTACKERS)  # the attackers of the search's stages
FIELD_PROBED = ("output L1", "feature L1 x1")  # a field student taught from answers, and from features too
ALIASES = Path(__file__).resolve().parents[2] / "results" / "recipe_aliases.csv"  # fingerprint here -> rows' recipe


@contextmanager
def one_thread():
    """The rows ran with one torch thread (other counts round differently)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _settings(layer: str) -> list[Setting]:
    """The defense readings a row can serve, each at a strength that moves the answers."""
    return [Setting(layers=(layer,), k=1, a=2.0),
            Setting(layers=(layer,), layout="spatial", k=2, a=3.0),
            Setting(layers=(layer,), k=64, tau=0.9, a=5.0),
            Setting(layers=(layer,), k=1, a=100.0, placement="exposed"),
            Setting(layers=(layer,), k=4, a=2.0, directions="random"),
            Setting(layers=(layer,), k=4, a=2.0, directions="bottom")]


@lru_cache(maxsize=None)
def _teacher_numbers(task_name: str, teacher: Source) -> dict[str, object]:
    """The run's teacher passes and the held-out pair's scores, once per process: the search's, the informed
    attackers' and the field stage's fingerprints all ask the same (on Real-ESRGAN x4plus they are most of each)."""
    session = session_teacher(task_name, teacher, budget=None)
    model, task = session.model, session.task
    queries = attacker_queries(task, _probe(task_name), 0)
    out: dict[str, object] = {"queries": queries}
    for layer in dict.fromkeys((session.early_layer, session.default_layer)):
        for n, defense in enumerate([_settings(layer)[0].clean] + _settings(layer)):
            out[f"{layer}/{n}/answers"], out[f"{layer}/{n}/features"] = ask_teacher(model, queries, defense)
    with output_noise(model, NOISE_SIGMA):
        out["output noise"], _ = ask_teacher(model, queries, _settings(session.default_layer)[0].clean)
    pairs = _held_out_pairs(task_name)
    out["input scores"], out["teacher scores"] = input_scores(pairs, task), mean_score(model, pairs, task)
    return out


@lru_cache(maxsize=None)
def _asked(task_name: str, teacher: Source, defense: Setting, base, seed: int):
    """The teacher's answers to a probe student's queries, once per process (shared as `_teacher_numbers`)."""
    session = session_teacher(task_name, teacher, budget=None)
    return asked(session.model, session.task, defense, base, seed)


def _probe(task_name: str):
    """The task's attacker at PROBE's size."""
    return dataclasses.replace(attack_for(task_name), **PROBE)


def _held_out_pairs(task_name: str) -> list:
    """The scored pair: a held-out crop and its degradation by the task (seed 0)."""
    return [get_task(task_name).make_pair(held_out_image("chelsea")[:HELD_OUT_SIDE, :HELD_OUT_SIDE], 0)]


def _numbers(task_name: str, teacher: Source, attackers: tuple[str, ...], field: bool) -> dict[str, object]:
    """Every measured part of the run, by name (tensors, arrays and floats), with the students of `attackers`
    (field students with `field`)."""
    task, layer = get_task(task_name), session_teacher(task_name, teacher, budget=None).default_layer
    inline, exposed = _settings(layer)[0], _settings(layer)[3]
    base = FieldAttack.of(_probe(task_name), task.scale) if field else _probe(task_name)
    out, pairs = dict(_teacher_numbers(task_name, teacher)), _held_out_pairs(task_name)
    for name in attackers:
        attack = attacker(base, name)
        runs = [(inline.clean, 0), (inline, 0)] + ([(exposed, 1)] if attack.reads_features else [])
        *_, last = taught(task, [_asked(task_name, teacher, defense, base, seed) for defense, seed in runs], attack,
                          every=attack.steps)
        for n, student in enumerate(last.students):
            out[f"{name}/{n}/weights"] = [p.detach() for p in student.state_dict().values()]
            out[f"{name}/{n}/scores"] = mean_score(student, pairs, task)
    return out


def _update(digest, value) -> None:
    """Feed a value into the hash: floats rounded to DECIMALS, -0 made 0, containers in order."""
    if isinstance(value, dict):
        for key in sorted(value):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _update(digest, item)
    else:
        array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
        digest.update(str(array.shape).encode())
        digest.update((np.round(array, DECIMALS) + 0.0).tobytes())


def fingerprint(task_name: str, teacher: Source, attackers: tuple[str, ...] = SEARCHED, field: bool = False) -> str:
    """The recipe's fingerprint on one teacher (the search's command line admitted it) for the rows of
    `attackers`: its short seeded run, rounded and hashed. Rows of other attackers (the informed stage's)
    carry their own, so a change to one group leaves the other's rows current. With `field`, for rows of
    field and quick students of `attackers` alike (the field stage's): the quick students' fingerprint and
    field students of FIELD_PROBED (the field student's own numbers; its losses are the quick one's)."""
    with one_thread():
        digest = hashlib.sha256()
        if field:
            digest.update(recipe_of(task_name, teacher, attackers).encode())
        _update(digest, _numbers(task_name, teacher, FIELD_PROBED if field else attackers, field))
    return digest.hexdigest()[:12]


def aliases() -> dict[str, str]:
    """Fingerprints measured on other kinds of CPU, by the recipe of the rows they were crosschecked against."""
    if not ALIASES.exists():
        return {}
    return dict(zip(*pd.read_csv(ALIASES, dtype=str)[["fingerprint", "recipe"]].T.values))


@lru_cache(maxsize=None)
def fingerprint_here(task_name: str, teacher: Source, attackers: tuple[str, ...] = SEARCHED,
                     field: bool = False) -> str:
    """`fingerprint`, once per process (the search and the store ask for it with every row)."""
    return fingerprint(task_name, teacher, attackers, field)


def recipe_of(task_name: str, teacher: Source, attackers: tuple[str, ...] = SEARCHED, field: bool = False) -> str:
    """The recipe of the rows this checkout computes here: its fingerprint, or the recipe that is an alias of."""
    here = fingerprint_here(task_name, teacher, attackers, field)
    return aliases().get(here, here)
