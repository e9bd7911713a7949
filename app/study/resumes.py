"""The search's long students filed as they train (app.attack.resume): a field student, or a quick one at the field's
budget, stopped with the search goes on from its last filing when the search resumes, instead of training its
10,000 steps again (a session's end stops a field stage that takes many sessions). A trained student's last
filing stays: a clean twin scored before the stop, whose row had not reached the file, is scored again in seconds.

A student's file is keyed by everything it trains from: the served queries, answers and features (their bytes),
its attacker and seed, the device, this machine's kind (another CPU rounds otherwise) and this checkout's recipe
fingerprint for its attacker (app.study.recipe: a change of the numbers on the student's path changes it, a
refactor does not). Students shorter than FROM_STEPS train again (minutes at most). They live under ASVP_STUDENTS
(default: the lab's cache), at most MOST_GB, the least recently filed going first.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from app.attack.distill import Answered, Attack, FieldAttack
from app.attack.resume import Resumable
from app.devices import machine
from app.study.passes import keep_within
from app.study.recipe import fingerprint_here
from app.teachers.pretrained import LAB_CACHE


FOLDER = Path(os.environ.get("ASVP_STUDENTS", LAB_CACHE / "students"))
FROM_STEPS = 2000  # a quick student of the budget curve's longest ordinary budget (2400) is filed as it goes too
EVERY = 500  # steps between filings: a minute or two of a field student on one core
MOST_GB = 2.0  # a field student's state is about 0.5 MB


def resumable(task: str, teacher, attack: Attack, served: Answered, device: torch.device) -> Resumable | None:
    """Where the student `attack` trains on `served` files its state, or None for a short one."""
    if attack.steps < FROM_STEPS:
        return None
    digest = hashlib.sha256(json.dumps(dict(
        task=task, teacher=str(teacher), attack=dataclasses.asdict(attack), student=type(attack).__name__,
        seed=served.seed, device=str(device), machine=machine(),
        recipe=fingerprint_here(task, teacher, (attack.label,), isinstance(attack, FieldAttack))),
        sort_keys=True).encode())
    for tensor in (served.queries, served.answers, *served.features):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return Resumable(FOLDER / f"{digest.hexdigest()[:24]}.pt", EVERY)


def keep_students_within() -> None:
    """Remove the least recently filed students' states beyond MOST_GB."""
    keep_within(FOLDER, MOST_GB * 2**30, "*.pt")
