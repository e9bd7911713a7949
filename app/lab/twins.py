"""The clean-taught twin of a Distill click, trained once and kept.

The student a clean teacher teaches depends on the teacher, the attacker (budget included), the seed and,
for an attacker who reads features, the hooked layers: never on k, a, the layout or the placement. So it
is trained once per such key, in the background from the look that precedes a click, and every later
click at another defense setting trains its defended student alone: on a heavy teacher the clean answers
are half of a click's teacher time, and on every teacher its student is half of the training (a core
left to another visitor); while it trains, a feature thief's click at an exposed setting shares its answers (the
maps amplified: no second pass). It trains as it would beside its defended twin (one single-threaded core per
student on a CPU, app.attack.cores), so a kept twin is the student the click would have trained.

The student that steals nothing (app.attack.distill.no_theft) is kept alike, per task, attacker and seed:
it needs no teacher, and it starts at the end of a click and steps only while no click's student does, so it
never slows one (a later click shows it).
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

import torch
from torch import nn

from app.attack.cores import in_background, on_cores, shares_cores
from app.attack.distill import Answered, Attack, alone, asked, no_theft, taught
from app.defense.setting import Setting
from app.lab.looks import teacher_turn


KEPT_PER_TEACHER = 8  # twins a teacher keeps (a quick student is a few hundred kB)
KEPT_ALONE = 16  # no-theft students kept, over every task
_kept: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()  # freed with the teacher
_alone: OrderedDict[tuple, tuple[Twin, Future]] = OrderedDict()
_kept_lock = threading.Lock()


@dataclass
class Twin:
    """A student trained in the background (a clean-taught twin, or the no-theft one): its curve grows as it does."""

    total: int
    history: list[tuple[int, float]] = field(default_factory=list)
    student: nn.Module | None = None  # set when trained
    served: Answered | None = None  # what a clean-taught twin was served, while it trains (a click may share it)
    asked: threading.Event = field(default_factory=threading.Event)  # set once `served` is (or never will be)


@lru_cache(maxsize=2)
def twin_trainer(background: bool = False) -> ThreadPoolExecutor:
    """The threads that drive twins (their steps run on the core pool), made on first use. Background
    students get a thread of their own, one after another: waiting for a click, they must never hold the
    thread a click's twin needs."""
    return ThreadPoolExecutor(1 if background else os.cpu_count() or 1,
                              thread_name_prefix="no-theft" if background else "twins")


def twin_key(task, clean: Setting, attack: Attack, seed: int) -> tuple:
    """What a clean-taught student depends on besides its teacher (the hooked layers only where it reads them)."""
    return task.name, clean.layers if attack.reads_features else (), attack, seed


def clean_twin(teacher: nn.Module, task, clean: Setting, attack: Attack, seed: int,
               every: int = 5) -> tuple[Twin, Future]:
    """The twin of this key: kept, under way, or started now in the background (the caller may wait on the
    future while its live curve grows)."""
    with _kept_lock:
        kept = _kept.setdefault(teacher, OrderedDict())

    def answered(twin: Twin):
        try:
            with teacher_turn(teacher):  # the teacher answers the queries first, on every core
                twin.served = asked(teacher, task, clean, attack, seed)
                progress = taught(task, [twin.served], attack, every)
                next(progress)
        finally:
            twin.asked.set()  # a click waiting to share the answers goes on, without them if asking failed
        return progress

    return _kept_or_started(kept, twin_key(task, clean, attack, seed), KEPT_PER_TEACHER, attack, answered,
                            shares_cores(teacher))


def no_theft_twin(task, attack: Attack, seed: int, every: int = 5) -> tuple[Twin, Future]:
    """The student that steals nothing (app.attack.distill.no_theft) for this task, attacker and seed: kept,
    under way, or started now in the background. It needs no teacher, so every teacher of the task shares it."""
    plain = alone(attack)

    def ready(_: Twin):
        progress = no_theft(task, plain, [seed], every)
        next(progress)
        return progress

    return _kept_or_started(_alone, (task.name, plain, seed), KEPT_ALONE, plain, ready, torch.get_num_threads() > 1,
                            background=True)


def _kept_or_started(kept: OrderedDict, key: tuple, most: int, attack: Attack, started: Callable[[Twin], Iterator],
                     beside: bool, background: bool = False) -> tuple[Twin, Future]:
    """The student of `key` in `kept` (its oldest beyond `most` dropped), or one trained now in the background:
    `started(twin)` makes its pass's first event and returns the pass, stepped on a core of its own if `beside`
    (only while no click's student steps, if `background`: app.attack.cores)."""
    with _kept_lock:
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
        twin = Twin(attack.steps)
        job = twin_trainer(background).submit(_train, started, beside, background, twin)
        kept[key] = twin, job
        while len(kept) > most:
            kept.popitem(last=False)
    job.add_done_callback(lambda done: (done.cancelled() or done.exception()) and _forget(kept, key, job))  # tried again
    return twin, job


def settle_background() -> None:
    """Drop the background students not started yet and wait for the one under way: for a caller that is about to
    time something in another process, where these would step unseen (app.attack.cores.busy counts this one's
    work only), or to exit. A later click starts any it needs again."""
    trainer = twin_trainer(True)
    twin_trainer.cache_clear()  # the next call makes new threads (a click's twins under way keep theirs)
    trainer.shutdown(wait=True, cancel_futures=True)


def _forget(kept: OrderedDict, key: tuple, job: Future) -> None:
    with _kept_lock:
        if kept.get(key, (None, None))[1] is job:
            del kept[key]


def _train(started: Callable[[Twin], Iterator], beside: bool, background: bool, twin: Twin) -> Twin:
    progress = started(twin)
    for now in on_cores(progress, background) if beside else in_background(progress) if background else progress:
        twin.history.append((now.step, now.losses[0]))
        last = now
    twin.student, twin.served = last.students[0], None  # a click from now on asks its own answers
    return twin
