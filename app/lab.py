"""What the app does, as plain functions on numpy images: no Gradio here, no torch in the UI.

A `Scene` is the image a user works on: degraded input and, when known, the clean ground truth.
`look` is the instant part (teacher with and without ASVP, spectra, perturbation); `duel` streams
the two students of one Distill click and ends with their metrics and a verdict.
"""
from __future__ import annotations

import copy
import itertools
import os
import re
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as NotYet
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch
from torch import nn

from app import thresholds
from app.asvp import ASVPConfig, FeatureMap, FeatureRecord, defend, hookable_layers
from app.bound import bound_db, rms
from app.cores import distill_on_cores, prepare_students
from app.distill import Attack, attacker_queries, clean_twin
from app.arches import ARCHES
from app.hub import LoadedTeacher, TeacherLoadError, bundled_for, bundled_teachers, load_teacher
from app.images import MAX_SIDE, cap_size
from app.metrics import high_frequency_share, radial_spectrum, score
from app.nets import restore
from app.tasks import Task, get_task

MIN_SIDE = 16  # smallest degraded image the teachers' two downsampling levels make sense on
HEARTBEAT_S = 0.5  # how often a Distill click reports while the attacker prepares its queries
PROBE_SIDE = 24  # the probe image that finds the hookable layers is about 24 x 40 (never square)
_query_maker = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="queries")
_queries_under_way: dict[tuple, Future] = {}
_queries_lock = threading.Lock()
_turns: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_turns_lock = threading.Lock()


@lru_cache(maxsize=None)
def _bundled(task_name: str) -> LoadedTeacher:
    return load_teacher(task_name)


def bundled_choices(task_name: str) -> list[tuple[str, str]]:
    """(family, source) for a task's bundled teachers: our U-Net first, then the field families."""
    return [(ARCHES[name.partition('-')[2] or 'unet'].family.title, name) for name in bundled_for(task_name)]


@dataclass
class SessionTeacher:
    """One visitor's teacher: a private copy (hooks on it never touch another session's) and the
    facts the UI shows about it."""

    task: Task
    source: str
    loaded: LoadedTeacher
    model: nn.Module
    layers: list[FeatureMap]  # where the defense can hook, in forward order
    default_layer: str  # the family's default hook (the end of the network's body)
    early_layer: str  # an early body stage of the family (the sweep's cheap hook point)
    stages: list[str]  # the body's stages, in forward order: every hook point a search tries


def probe(loaded: LoadedTeacher) -> torch.Tensor:
    """A seeded 1 x 3 x H x W image that meets the teacher's size rule as it is (padding would
    hide which maps follow the input) and is not square."""
    m = loaded.size_multiple
    h = -(-max(PROBE_SIDE, loaded.size_minimum) // m) * m
    w = h + -(-16 // m) * m
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def hook_layer(layers: list[FeatureMap], pattern: str) -> str:
    """The last layer whose name matches a family's pattern (its default hook, or its early stage);
    else the last map at the input's resolution with more channels than an image; else the last map."""
    names = [f.name for f in layers if re.fullmatch(pattern, f.name)]
    names = names or [f.name for f in layers if f.scale == 1 and f.channels > 3] or [f.name for f in layers]
    return names[-1]


def session_teacher(task_name: str, source: str = "", device: torch.device = torch.device("cpu")) -> SessionTeacher:
    """Load (bundled teachers once per process) and copy a teacher for one session onto `device`
    (its Distill students train there too); refuse one whose scale does not fit the task, or that
    offers no feature map to hook."""
    task, source = get_task(task_name), (source or "").strip() or task_name
    loaded = _bundled(source) if source in bundled_teachers() else load_teacher(source)
    if loaded.scale != task.scale:
        raise TeacherLoadError(f"this teacher upscales x{loaded.scale}, but task {task.name} needs "
                               f"x{task.scale}: pick the matching task")
    model = copy.deepcopy(loaded.model).to(device)
    layers = hookable_layers(model, probe(loaded).to(device))
    if not layers:
        raise TeacherLoadError(f"{loaded.origin} shows no feature map that follows the input's size: nothing to hook")
    return SessionTeacher(task, source, loaded, model, layers, hook_layer(layers, loaded.default_layer),
                          hook_layer(layers, loaded.early_layer),
                          [f.name for f in layers if re.fullmatch(loaded.stages, f.name)] or [f.name for f in layers])


@dataclass
class Scene:
    task: Task
    degraded: np.ndarray
    target: np.ndarray | None
    note: str = ""
    # the teacher's latest answers on this scene, (teacher, defense, clean, defended): a Distill click
    # scores the images its look already showed instead of running the teacher twice more
    answered: tuple | None = field(default=None, repr=False, compare=False)


def make_scene(task, image: np.ndarray, already_degraded: bool, seed: int) -> Scene:
    """Cap the size, then degrade a clean image with the task (ground truth known) or take it as is."""
    h, w = image.shape[:2]
    need = MIN_SIDE * (1 if already_degraded else task.scale)
    if min(h, w) < need:
        raise ValueError(f"the image is {w}x{h} px; {task.title.lower()} needs at least {need}x{need} px")
    if already_degraded:
        image = cap_size(image, MAX_SIDE // task.scale)
        note = "uploaded as degraded: no ground truth, so no reference metrics"
        scene = Scene(task, image, None, note)
    else:
        image = cap_size(image, MAX_SIDE, multiple=4 * task.scale)
        degraded, target = task.make_pair(image, seed)
        scene = Scene(task, degraded, target, f"degraded with the {task.title.lower()} model, seed {seed}")
    if image.shape[:2] != (h, w):
        scene.note += f"; downscaled from {w}x{h} to {image.shape[1]}x{image.shape[0]} (cap {MAX_SIDE} px)"
    return scene


@dataclass(frozen=True)
class Quality:
    psnr: float  # dB
    ssim: float


def reference_quality(img: np.ndarray, scene: Scene) -> Quality | None:
    """PSNR/SSIM against the ground truth, or None when there is no reference."""
    return None if scene.target is None else Quality(**score(img, scene.target, scene.task))


@dataclass(frozen=True)
class TeacherScores:
    """The instant view's numbers (None where the scene has no ground truth)."""

    input: Quality | None
    teacher: Quality | None
    defended_teacher: Quality | None


@dataclass(frozen=True)
class DuelScores(TeacherScores):
    """A Distill click's numbers: the teachers', plus both students'."""

    clean_student: Quality | None = None
    defended_student: Quality | None = None


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


def teacher_turn(teacher: nn.Module) -> threading.Lock:
    """The lock a teacher's forwards take turns on. One session's look, a-sweep and Distill click can
    overlap, and the defense hooks the module itself: without turns, one event's in-line hook would
    reach another's forward (a "clean" answer computed under someone else's defense)."""
    with _turns_lock:
        return _turns.setdefault(teacher, threading.Lock())


def answers(teacher, scene: Scene, defense: ASVPConfig, record: FeatureRecord | None = None):
    """The teacher's output on the scene without and with the defense (a record needs the forward
    run again; without one, the scene's latest answers serve when teacher and defense match)."""
    if record is None and scene.answered and scene.answered[0] is teacher and scene.answered[1] == defense:
        return scene.answered[2:]
    with teacher_turn(teacher):
        clean = restore(teacher, scene.degraded)
        with defend(teacher, defense, record):
            defended = restore(teacher, scene.degraded)
    scene.answered = (teacher, defense, clean, defended)
    return clean, defended


def baseline(scene: Scene) -> np.ndarray:
    """What the user already has, at the output's size (bicubic-upsampled for SR)."""
    h, w = scene.degraded.shape[:2]
    return scene.task.input_baseline(scene.degraded, (h * scene.task.scale, w * scene.task.scale))


def teacher_scores(scene: Scene, clean: np.ndarray, defended: np.ndarray) -> TeacherScores:
    return TeacherScores(reference_quality(baseline(scene), scene), reference_quality(clean, scene),
                         reference_quality(defended, scene))


def look(teacher, scene: Scene, defense: ASVPConfig) -> Look:
    record = FeatureRecord()
    clean, defended = answers(teacher, scene, defense, record)
    diff = defended - clean
    span = float(np.abs(diff).max())  # 0: the served output did not move (exposed placement, or a = 1)
    shown = 0.5 + 0.5 * diff / span if span else np.full_like(diff, 0.5)
    freqs, power = radial_spectrum(diff)
    return Look(baseline(scene), clean, defended, shown, span, record.spectra[defense.layers[0]],
                freqs, power, teacher_scores(scene, clean, defended))


def teacher_cost(teacher, scene: Scene, defense: ASVPConfig) -> tuple[float, float]:
    """(teacher dPSNR against the ground truth, high-frequency share of the perturbation)."""
    clean, defended = answers(teacher, scene, defense)
    d = (reference_quality(defended, scene).psnr - reference_quality(clean, scene).psnr
         if scene.target is not None else float("nan"))
    return d, high_frequency_share(defended - clean)


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


OUTCOMES = ("no reference", "not learned", "costly", "protects", "weak", "none")


@dataclass(frozen=True)
class Verdict:
    """The lab's judgement of one Distill click, with the numbers it rests on (dB; drops and
    costs are positive when the defended side is worse)."""

    outcome: str  # one of OUTCOMES
    student_drop: float = float("nan")
    teacher_cost: float = float("nan")
    teacher_ssim_change: float = float("nan")  # defended - clean
    bound: float = float("nan")  # the output-KD bound on this image (dB, <= 0; app.bound)


def verdict(s: DuelScores, bound: float = float("nan")) -> Verdict:
    """Judge a pair of students, refusing to when the clean-taught student learned nothing: a drop
    counts as protection only when the teacher did not pay for it (app.thresholds)."""
    if s.clean_student is None:
        return Verdict("no reference")
    if s.clean_student.psnr <= s.input.psnr:
        return Verdict("not learned")
    drop, cost = s.clean_student.psnr - s.defended_student.psnr, s.teacher.psnr - s.defended_teacher.psnr
    ssim_change = s.defended_teacher.ssim - s.teacher.ssim
    if drop >= thresholds.PROTECTS_DB:
        costly = cost >= thresholds.DAMAGES_PSNR_DB or -ssim_change >= thresholds.DAMAGES_SSIM
        outcome = "costly" if costly else "protects"
    else:
        outcome = "weak" if drop >= thresholds.WEAK_DB else "none"
    return Verdict(outcome, drop, cost, ssim_change, bound)


def start_queries(task, attack: Attack, seed: int) -> Future:
    """Start building (and caching) the attacker's queries for this seed, or find them under way: a
    look starts them, so the Distill click that follows does not spend seconds degrading images
    or importing what its students need (a click that starts them itself reports while it waits)."""
    key = (task.name, attack.queries, attack.patch, attack.variants, seed)  # all the queries depend on
    with _queries_lock:
        for done in [k for k, job in _queries_under_way.items() if job.done()]:  # made: the cache has them
            del _queries_under_way[done]
        if key not in _queries_under_way:
            _queries_under_way[key] = _query_maker.submit(_prepare_attacker, task, attack, seed)
        return _queries_under_way[key]


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


def duel(teacher, scene: Scene, defense: ASVPConfig, attack: Attack, seed: int,
         every: int = 5) -> Iterator[DuelUpdate]:
    """Distil a clean-taught and a defended-taught student side by side (same seed, queries, batch
    order and budget; each on a core of its own on a CPU) and score both on the scene."""
    history = {"clean-taught": [], "defended-taught": []}
    for _ in queries_ready(scene.task, attack, seed):
        yield DuelUpdate(0, attack.steps, history)
    with teacher_turn(teacher):  # the teacher answers every run's queries before the first event
        progress = distill_on_cores(teacher, scene.task, [(clean_twin(defense), seed), (defense, seed)], attack, every)
        answered = next(progress)
    for now in itertools.chain([answered], progress):
        if now.step:
            history["clean-taught"].append((now.step, now.losses[0]))
            history["defended-taught"].append((now.step, now.losses[1]))
        yield DuelUpdate(now.step, now.total, history)
    students = tuple(restore(student, scene.degraded) for student in now.students)
    clean, defended = answers(teacher, scene, defense)
    teachers = teacher_scores(scene, clean, defended)
    scores = DuelScores(teachers.input, teachers.teacher, teachers.defended_teacher,
                        reference_quality(students[0], scene), reference_quality(students[1], scene))
    yield DuelUpdate(now.total, now.total, history, (clean, defended), students, scores,
                     verdict(scores, image_bound(scene, clean, defended, students[0])))


def image_bound(scene: Scene, clean: np.ndarray, defended: np.ndarray, clean_student: np.ndarray) -> float:
    """The output-KD bound on this image: how much PSNR a least-squares student with the clean-taught
    student's error could lose when the teacher's answers move as they did here (nan: no reference)."""
    if scene.target is None:
        return float("nan")
    error = rms(torch.from_numpy(clean_student - scene.target))
    return bound_db(error, rms(torch.from_numpy(defended - clean))) if error > 0 else float("nan")
