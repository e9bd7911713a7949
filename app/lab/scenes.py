"""A scene is the image a user works on: the degraded input and, when known, the clean ground
truth; and the quality numbers measured on it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.data.images import MAX_SIDE, cap_size
from app.data.metrics import score
from app.data.tasks import Task


MIN_SIDE = 16  # smallest degraded image the teachers' two downsampling levels make sense on


@dataclass
class Scene:
    task: Task
    degraded: np.ndarray
    target: np.ndarray | None
    note: str = ""
    # the teacher's latest answers on this scene, (teacher, defense, clean, defended): a Distill click
    # scores the images its look already showed instead of running the teacher twice more
    answered: tuple | None = field(default=None, repr=False, compare=False)


def make_scene(task, image: np.ndarray, already_degraded: bool, seed: int, max_side: int = MAX_SIDE) -> Scene:
    """Cap the size (at `max_side` px out: the upload cap, or a slow teacher's own), then degrade a clean
    image with the task (ground truth known) or take it as is."""
    h, w = image.shape[:2]
    need = MIN_SIDE * (1 if already_degraded else task.scale)
    if min(h, w) < need:
        raise ValueError(f"the image is {w}x{h} px; {task.title.lower()} needs at least {need}x{need} px")
    if already_degraded:
        image = cap_size(image, max_side // task.scale)
        note = "uploaded as degraded: no ground truth, so no reference metrics"
        scene = Scene(task, image, None, note)
    else:
        image = cap_size(image, max_side, multiple=4 * task.scale)
        degraded, target = task.make_pair(image, seed)
        scene = Scene(task, degraded, target, f"degraded with the {task.title.lower()} model, seed {seed}")
    if image.shape[:2] != (h, w):
        scene.note += f"; downscaled from {w}x{h} to {image.shape[1]}x{image.shape[0]} (cap {max_side} px)"
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
class Fidelity:
    """How close each output is to the clean teacher's answer (PSNR/SSIM with that answer as the
    reference, the task's conventions): stealing means copying the teacher, so this is the thief's own
    measure, and it needs no ground truth."""

    input: Quality
    defended_teacher: Quality
    clean_student: Quality
    defended_student: Quality
    no_theft: Quality | None = None  # the student that stole nothing, once trained


@dataclass(frozen=True)
class DuelScores(TeacherScores):
    """A Distill click's numbers: the teachers', plus both students', against the ground truth (None
    without one) and against the clean teacher's answer."""

    clean_student: Quality | None = None
    defended_student: Quality | None = None
    fidelity: Fidelity | None = None
    no_theft: Quality | None = None  # the student that stole nothing (app.attack.distill.no_theft)
    no_theft_ready: bool = False  # False: it still trains in the background


def fidelity(scene: Scene, clean: np.ndarray, defended: np.ndarray, students: tuple[np.ndarray, np.ndarray],
             no_theft: np.ndarray | None = None) -> Fidelity:
    """The input, the defended teacher and the students, each scored against the clean teacher's answer."""
    def to_teacher(img: np.ndarray) -> Quality:
        return Quality(**score(img, clean, scene.task))

    return Fidelity(to_teacher(baseline(scene)), to_teacher(defended), *map(to_teacher, students),
                    None if no_theft is None else to_teacher(no_theft))


def baseline(scene: Scene) -> np.ndarray:
    """What the user already has, at the output's size (bicubic-upsampled for SR)."""
    h, w = scene.degraded.shape[:2]
    return scene.task.input_baseline(scene.degraded, (h * scene.task.scale, w * scene.task.scale))


def teacher_scores(scene: Scene, clean: np.ndarray, defended: np.ndarray) -> TeacherScores:
    return TeacherScores(reference_quality(baseline(scene), scene), reference_quality(clean, scene),
                         reference_quality(defended, scene))
