"""A Distill click: the attacker's queries (and the clean-taught twin, app.lab.twins) prepared in the
background after a look, then a defended-taught student trained beside its twin and both judged."""
from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as NotYet
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch

from app.attack.cores import busy, on_cores, prepare_students, shares_cores
from app.attack.distill import Attack, attacker_queries, distill, exposed_answered, taught
from app.defense.setting import Setting
from app.lab.looks import answers, teacher_turn
from app.lab.scenes import DuelScores, Scene, fidelity, reference_quality, teacher_scores
from app.lab.twins import Twin, clean_twin, no_theft_twin
from app.lab.verdicts import Verdict, image_bound, verdict
from app.teachers.budget import Cost
from app.teachers.networks import restore


HEARTBEAT_S = 0.5  # how often a Distill click reports while the attacker prepares its queries
# the most a slow teacher may spend answering one student's queries: a click right after a look waits for two
# students' answers (the twin's, which the look started, then the defended one's), then trains both (two SR x4
# students' 400 steps take ~12 s on 2 cores, python -m app.bench), and the estimate runs up to 15 % short: 30 s
ANSWER_S = 7.0
_queries_under_way: dict[tuple, Future] = {}
_queries_lock = threading.Lock()


@lru_cache(maxsize=1)
def query_maker() -> ThreadPoolExecutor:
    """The threads that prepare a click (the attacker's queries, the teacher's answers to them) and score its
    end, made on first use: importing the lab starts none."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="queries")


@dataclass
class DuelUpdate:
    """One step of a Distill click; `teachers`, `students`, `scores` and `verdict` are set on the last one."""

    step: int
    total: int
    history: dict[str, list[tuple[int, float]]]
    teachers: tuple[np.ndarray, np.ndarray] | None = None  # the clean and the defended teacher's answers
    students: tuple[np.ndarray, np.ndarray] | None = None
    scores: DuelScores | None = None
    verdict: Verdict | None = None


def fitted_queries(attack: Attack, cost: Cost | None) -> Attack:
    """The attacker's queries, fewer for a teacher measured so slow here that answering them all would take
    over ANSWER_S (never fewer than a batch): a click on a heavy teacher must end within half a minute."""
    if cost is None or not cost.timed:
        return attack
    fit = int(ANSWER_S / (cost.seconds_per_pixel * attack.patch ** 2))
    return attack if fit >= attack.queries else dataclasses.replace(attack, queries=max(attack.batch, fit))


def start_queries(task, attack: Attack, seed: int) -> Future:
    """Start building (and caching) the attacker's queries for this seed, or find them under way: a
    look starts them, so the Distill click that follows does not spend seconds degrading images
    or importing what its students need (a click that starts them itself reports while it waits)."""
    key = (task.name, attack.queries, attack.patch, attack.variants, seed)  # all the queries depend on
    with _queries_lock:
        for done in [k for k, job in _queries_under_way.items() if job.done()]:  # made: the cache has them
            del _queries_under_way[done]
        if key not in _queries_under_way:
            _queries_under_way[key] = query_maker().submit(_prepare_attacker, task, attack, seed)
        return _queries_under_way[key]


def prepare_click(teacher, task, defense: Setting, attack: Attack, seed: int) -> None:
    """What a look starts for the Distill click that may follow: the attacker's queries for this seed, then
    the clean-taught twin (app.lab.twins) of this attacker and hooked layers, once the queries are made (a
    thread of its own waits, so no pool waits on itself). The student that steals nothing starts at the end
    of a click instead: trained during one, it would take a core from the click's students."""
    queries = start_queries(task, attack, seed)
    held = weakref.ref(teacher)  # a visitor's teacher is freed with its session, even with its queries under way
    threading.Thread(target=_twin_after, args=(held, queries, task, defense.clean, attack, seed),
                     name="prepare-click", daemon=True).start()


def _twin_after(held: weakref.ref, queries: Future, task, clean: Setting, attack: Attack, seed: int) -> None:
    if queries.exception() is not None or (teacher := held()) is None:
        return  # the click will say why the queries failed; a freed teacher has no click to come
    clean_twin(teacher, task, clean, attack, seed)


def _prepare_attacker(task, attack: Attack, seed: int) -> torch.Tensor:
    """The students' lazy imports (made once), and the attacker's queries for this seed (cached)."""
    prepare_students()
    return attacker_queries(task, attack, seed)


def queries_ready(task, attack: Attack, seed: int) -> Iterator[None]:
    """Wait for the attacker's queries (started here unless a look started them), yielding every
    HEARTBEAT_S until they are ready."""
    job = start_queries(task, attack, seed)
    while True:
        try:
            job.result(timeout=HEARTBEAT_S)
            return
        except NotYet:
            yield


def duel(teacher, scene: Scene, defense: Setting, attack: Attack, seed: int,
         every: int = 5) -> Iterator[DuelUpdate]:
    """Distil a defended-taught student beside its clean-taught twin (same seed, queries, batch order and
    budget) and score both on the scene. The twin is kept from an earlier click or look (app.lab.twins), or
    trains now. On a CPU every student trains on one core of its own, kept twin or not: a thread count
    changes a student's weights by float rounding, and a click must give the same students every time."""
    with busy():  # background students wait for the click
        yield from _duel(teacher, scene, defense, attack, seed, every)


def _duel(teacher, scene: Scene, defense: Setting, attack: Attack, seed: int, every: int) -> Iterator[DuelUpdate]:
    history = {"clean-taught": [], "defended-taught": []}
    for _ in queries_ready(scene.task, attack, seed):
        yield DuelUpdate(0, attack.steps, history)
    twin, trained = clean_twin(teacher, scene.task, defense.clean, attack, seed, every)
    answering = query_maker().submit(_answered, teacher, scene.task, defense, attack, seed, every, twin, trained)
    while not _ready(answering):  # a slow teacher, or one answering the twin's queries first
        history["clean-taught"] = list(twin.history)
        yield DuelUpdate(0, attack.steps, history)
    progress, answered = answering.result()
    for now in itertools.chain([answered], on_cores(progress) if shares_cores(teacher) else progress):
        if now.step:
            history["defended-taught"].append((now.step, now.losses[0]))
        history["clean-taught"] = list(twin.history)
        yield DuelUpdate(now.step, now.total, history)
    while not _ready(trained):  # the twin, still training: its curve grows meanwhile
        history["clean-taught"] = list(twin.history)
        yield DuelUpdate(now.total, now.total, history)
    history["clean-taught"] = list(twin.history)
    scoring = query_maker().submit(_scored, teacher, scene, defense, attack, seed,
                                   (trained.result().student, now.students[0]))
    while not _ready(scoring):  # a heavy teacher's two answers on the scene take seconds: the bar keeps moving
        yield DuelUpdate(now.total, now.total, history)
    yield DuelUpdate(now.total, now.total, history, *scoring.result())


def _scored(teacher, scene: Scene, defense: Setting, attack: Attack, seed: int, taught: tuple) -> tuple:
    """(the clean and the defended teacher's answers on the scene, the clean- and defended-taught students'
    answers, their scores, the verdict): the end of a click."""
    students = tuple(restore(student, scene.degraded) for student in taught)
    _, alone = no_theft_twin(scene.task, attack, seed)  # started here, shown once trained: no click waits for it
    kept = alone.done() and alone.exception() is None
    free = restore(alone.result().student, scene.degraded) if kept else None
    clean, defended = answers(teacher, scene, defense)
    teachers = teacher_scores(scene, clean, defended)
    scores = DuelScores(teachers.input, teachers.teacher, teachers.defended_teacher,
                        reference_quality(students[0], scene), reference_quality(students[1], scene),
                        fidelity(scene, clean, defended, students, free),
                        None if free is None else reference_quality(free, scene), kept)
    return (clean, defended), students, scores, verdict(scores, image_bound(scene, clean, defended, students[0]))


def _answered(teacher, task, defense: Setting, attack: Attack, seed: int, every: int, twin: Twin, trained: Future):
    """The defended student's pass, once the teacher has answered its queries (on its turn), and that event. An
    exposed setting leaves the answers untouched, so a feature thief's defended answers are the twin's clean ones
    with their maps amplified (app.attack.distill.exposed_answered, bit for bit): no second teacher pass."""
    if defense.placement == "exposed" and not defense.is_identity and attack.reads_features:
        while not twin.asked.wait(HEARTBEAT_S) and not trained.done():
            pass  # the twin is asking (or waits for a thread of its own)
        if (clean := twin.served) is not None:  # read once: the twin lets go of it when trained
            progress = taught(task, [exposed_answered(clean, defense)], attack, every)
            return progress, next(progress)
    with teacher_turn(teacher):
        progress = distill(teacher, task, [(defense, seed)], attack, every)
        return progress, next(progress)


def _ready(job: Future) -> bool:
    """Whether `job` finished within a heartbeat (its failure is raised by `result`)."""
    try:
        job.result(timeout=HEARTBEAT_S)
        return True
    except NotYet:
        return False
