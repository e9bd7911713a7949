"""The instant part of the lab: the teacher with and without the defense on a scene, the spectra
and the perturbation."""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from torch import nn

from app.attack.cores import busy
from app.data.metrics import high_frequency_share, radial_spectrum
from app.defense.asvp import FeatureRecord, defend
from app.defense.setting import Setting
from app.lab.scenes import Scene, TeacherScores, baseline, reference_quality, teacher_scores
from app.teachers.networks import restore


_turns: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_turns_lock = threading.Lock()


@dataclass
class Look:
    """The instant view of one defense setting on one scene."""

    baseline: np.ndarray  # what the user has (bicubic-upsampled for SR)
    clean: np.ndarray
    defended: np.ndarray
    perturbation: np.ndarray  # defended - clean, scaled by 1 / span around mid-grey (all grey: no change)
    span: float  # the largest served change; 0 where the defense leaves the output untouched
    spectra: tuple[np.ndarray, np.ndarray]
    freqs: np.ndarray
    power: np.ndarray
    scores: TeacherScores


@contextmanager
def teacher_turn(teacher: nn.Module) -> Iterator[None]:
    """A turn on the lock a teacher's forwards take turns on. One session's look, a-sweep and Distill click
    can overlap, and the defense hooks the module itself: without turns, one event's in-line hook would
    reach another's forward (a "clean" answer computed under someone else's defense). A turn is work a
    visitor waits for: background students wait for it (app.attack.cores.busy)."""
    with _turns_lock:
        turn = _turns.setdefault(teacher, threading.Lock())
    with turn, busy():
        try:
            yield
        finally:
            give_back_freed_memory()


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim (None where the C library is another)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def give_back_freed_memory() -> None:
    """Hand the pages a teacher's forward freed back to the system. Its activations (tens of MB each) are freed in
    the arena of the thread that ran it, and each visitor's events run in other threads: glibc keeps those pages
    for that arena's next allocations, so eight sessions held ~1.5 GB more than their largest forward needs."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


def answers(teacher, scene: Scene, defense: Setting, record: FeatureRecord | None = None):
    """The teacher's output on the scene without and with the defense (a record needs the forward
    run again; without one, the scene's latest answers serve when teacher and defense match)."""
    if record is None and scene.answered and scene.answered[0] is teacher and scene.answered[1] == defense:
        return scene.answered[2:]
    with teacher_turn(teacher):
        clean = restore(teacher, scene.degraded)
        with defend(teacher, defense, record):
            defended = restore(teacher, scene.degraded)
    for name, answer in (("teacher", clean), ("defended teacher", defended)):
        if not np.isfinite(answer).all():
            raise ValueError(f"the {name}'s answer holds values that are not finite (NaN or infinity): this "
                             "teacher cannot be scored" + (" at this setting" if name != "teacher" else ""))
    scene.answered = (teacher, defense, clean, defended)
    return clean, defended


def look(teacher, scene: Scene, defense: Setting) -> Look:
    record = FeatureRecord()
    clean, defended = answers(teacher, scene, defense, record)
    diff = defended - clean
    span = float(np.abs(diff).max())  # 0: the served output did not move (exposed placement, or a = 1)
    shown = 0.5 + 0.5 * diff / span if span else np.full_like(diff, 0.5)
    freqs, power = radial_spectrum(diff)
    return Look(baseline(scene), clean, defended, shown, span, record.spectra[defense.layers[0]],
                freqs, power, teacher_scores(scene, clean, defended))


def teacher_cost(teacher, scene: Scene, defense: Setting) -> tuple[float, float]:
    """(teacher dPSNR against the ground truth, high-frequency share of the perturbation)."""
    clean, defended = answers(teacher, scene, defense)
    d = (reference_quality(defended, scene).psnr - reference_quality(clean, scene).psnr
         if scene.target is not None else float("nan"))
    return d, high_frequency_share(defended - clean)
