"""The clean-taught twin of a Distill click, trained once and kept.

The student a clean teacher teaches depends on the teacher, the attacker (budget included), the seed and,
for an attacker who reads features, the hooked layers: never on k, a, the layout or the placement. So it
is trained once per such key, in the background from the look that precedes a click, and every later
click at another defense setting trains its defended student alone: on a heavy teacher the clean answers
are half of a click's teacher time, and on every teacher its student is half of the training (a core
left to another visitor). It trains as it would beside its defended twin (one single-threaded core per
student on a CPU, app.attack.cores), so a kept twin is the student the click would have trained.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

from torch import nn

from app.attack.cores import on_cores, shares_cores
from app.attack.distill import Attack, distill
from app.defense.setting import Setting
from app.lab.looks import teacher_turn


KEPT_PER_TEACHER = 8  # twins a teacher keeps (a quick student is a few hundred kB)
_kept: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()  # freed with the teacher
_kept_lock = threading.Lock()


@dataclass
class Twin:
    """A clean-taught student as it trains: its loss curve grows while it does."""

    total: int
    history: list[tuple[int, float]] = field(default_factory=list)
    student: nn.Module | None = None  # set when trained


@lru_cache(maxsize=1)
def twin_trainer() -> ThreadPoolExecutor:
    """The threads that drive background twins (their steps run on the core pool), made on first use."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="twins")


def twin_key(task, clean: Setting, attack: Attack, seed: int) -> tuple:
    """What a clean-taught student depends on besides its teacher (the hooked layers only where it reads them)."""
    return task.name, clean.layers if attack.reads_features else (), attack, seed


def clean_twin(teacher: nn.Module, task, clean: Setting, attack: Attack, seed: int,
               every: int = 5) -> tuple[Twin, Future]:
    """The twin of this key: kept, under way, or started now in the background (the caller may wait on the
    future while its live curve grows)."""
    key = twin_key(task, clean, attack, seed)
    with _kept_lock:
        kept = _kept.setdefault(teacher, OrderedDict())
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
        twin = Twin(attack.steps)
        job = twin_trainer().submit(_train, teacher, task, clean, attack, seed, twin, every)
        kept[key] = twin, job
        while len(kept) > KEPT_PER_TEACHER:
            kept.popitem(last=False)
    held = weakref.ref(teacher)  # the future keeps its callback: a strong reference would keep the teacher
    job.add_done_callback(lambda done: done.exception() and _forget(held, key))  # a failed twin is tried again
    return twin, job


def _forget(held: weakref.ref, key: tuple) -> None:
    teacher = held()
    if teacher is not None:
        with _kept_lock:
            _kept.get(teacher, {}).pop(key, None)


def _train(teacher: nn.Module, task, clean: Setting, attack: Attack, seed: int, twin: Twin, every: int) -> Twin:
    with teacher_turn(teacher):  # the teacher answers the queries first, on every core
        progress = distill(teacher, task, [(clean, seed)], attack, every)
        next(progress)
    stepped = on_cores(progress) if shares_cores(teacher) else progress
    for now in stepped:
        twin.history.append((now.step, now.losses[0]))
        last = now
    twin.student = last.students[0]
    return twin
