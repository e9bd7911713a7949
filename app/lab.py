"""What the app does, as plain functions on numpy images: no Gradio here, no torch in the UI.

A `Scene` is the image a user works on: degraded input and, when known, the clean ground truth.
`look` is the instant part (teacher with and without ASVP, spectra, perturbation); `duel` streams
the two students of one Distill click and ends with their metrics and a verdict.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as NotYet
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from app.asvp import ASVPConfig, FeatureRecord, defend
from app.distill import Attack, attacker_queries, clean_twin, distill
from app.images import MAX_SIDE, cap_size
from app.metrics import high_frequency_share, radial_spectrum, score
from app.nets import UNetTeacher, restore


MIN_SIDE = 16  # smallest degraded image the teachers' two downsampling levels make sense on
HEARTBEAT_S = 0.5  # how often a Distill click reports while the attacker prepares its queries


def hookable_layers(model) -> list[str]:
    """The named stages of a teacher, in forward order: where the defense can hook."""
    return [name for name, _ in model.named_children()]


TEACHER_LAYERS = hookable_layers(UNetTeacher())


@dataclass
class Scene:
    task: object
    degraded: np.ndarray
    target: np.ndarray | None
    note: str = ""


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


def metrics(img: np.ndarray, scene: Scene) -> dict[str, float] | None:
    """PSNR/SSIM against the ground truth, or None when there is no reference."""
    return None if scene.target is None else score(img, scene.target, scene.task)


def caption(name: str, m: dict[str, float] | None) -> str:
    return f"{name}: no reference" if m is None else f"{name}: {m['psnr']:.2f} dB / SSIM {m['ssim']:.4f}"


@dataclass
class Look:
    """The instant view of one defense setting on one scene."""

    baseline: np.ndarray  # what the user has (bicubic-upsampled for SR)
    clean: np.ndarray
    defended: np.ndarray
    perturbation: np.ndarray  # defended - clean, scaled by 1 / span around mid-grey
    span: float
    spectra: tuple[np.ndarray, np.ndarray]
    freqs: np.ndarray
    power: np.ndarray
    scores: dict[str, dict | None]


def answers(teacher, scene: Scene, defense: ASVPConfig, record: FeatureRecord | None = None):
    """The teacher's output on the scene without and with the defense."""
    clean = restore(teacher, scene.degraded)
    with defend(teacher, defense, record):
        return clean, restore(teacher, scene.degraded)


def baseline(scene: Scene) -> np.ndarray:
    """What the user already has, at the output's size (bicubic-upsampled for SR)."""
    h, w = scene.degraded.shape[:2]
    return scene.task.input_baseline(scene.degraded, (h * scene.task.scale, w * scene.task.scale))


def teacher_scores(scene: Scene, clean: np.ndarray, defended: np.ndarray) -> dict[str, dict | None]:
    return {"input": metrics(baseline(scene), scene), "teacher": metrics(clean, scene),
            "teacher + ASVP": metrics(defended, scene)}


def look(teacher, scene: Scene, defense: ASVPConfig) -> Look:
    record = FeatureRecord()
    clean, defended = answers(teacher, scene, defense, record)
    diff = defended - clean
    span = max(float(np.abs(diff).max()), 1e-6)
    freqs, power = radial_spectrum(diff)
    return Look(baseline(scene), clean, defended, 0.5 + 0.5 * diff / span, span, record.spectra[defense.layers[0]],
                freqs, power, teacher_scores(scene, clean, defended))


def teacher_cost(teacher, scene: Scene, defense: ASVPConfig) -> tuple[float, float]:
    """(teacher dPSNR against the ground truth, high-frequency share of the perturbation)."""
    clean, defended = answers(teacher, scene, defense)
    d = metrics(defended, scene)["psnr"] - metrics(clean, scene)["psnr"] if scene.target is not None else float("nan")
    return d, high_frequency_share(defended - clean)


@dataclass
class DuelUpdate:
    """One step of a Distill click; `students`, `rows` and `verdict` are set on the last one."""

    step: int
    total: int
    history: dict[str, list[tuple[int, float]]]
    students: tuple[np.ndarray, np.ndarray] | None = None
    rows: list[list] | None = None
    verdict: str = ""


def verdict(rows: dict[str, dict | None]) -> str:
    """The protection verdict in words, refusing to judge when the clean-taught student learned nothing."""
    inp, t, td, s, sd = (rows[k] for k in ("input", "teacher", "teacher + ASVP", "student (clean teacher)",
                                           "student (defended teacher)"))
    if s is None:
        return "No ground truth for this image, so no verdict: compare the students by eye."
    if s["psnr"] <= inp["psnr"]:
        return ("The undefended student did not learn (it does not beat the degraded input): no verdict. "
                "Raise the student budget.")
    student_drop, teacher_cost = s["psnr"] - sd["psnr"], t["psnr"] - td["psnr"]
    if abs(teacher_cost) <= 0.01:
        cost = "The teacher's PSNR did not change."
    else:
        cost = (f"The teacher's PSNR {'fell' if teacher_cost > 0 else 'rose'} by {abs(teacher_cost):.2f} dB "
                f"and its SSIM changed by {td['ssim'] - t['ssim']:+.4f}.")
    if student_drop >= 1.0 and (teacher_cost >= 0.5 or t["ssim"] - td["ssim"] >= 0.02):
        return (f"The defended-taught student lost {student_drop:.2f} dB, but at a price: {cost} "
                "The defense damages the output it is meant to protect.")
    if student_drop >= 1.0:
        return f"ASVP protects here: the defended-taught student lost {student_drop:.2f} dB. {cost}"
    if student_drop >= 0.2:
        return f"Weak protection: the defended-taught student lost only {student_drop:.2f} dB. {cost}"
    return f"No protection: the defended-taught student is as good ({-student_drop:+.2f} dB). {cost}"


def queries_ready(task, attack: Attack, seed: int) -> Iterator[None]:
    """Build (and cache) the attacker's queries on a worker thread, yielding every HEARTBEAT_S
    until they are ready: the first click of a task spends over a second degrading them."""
    with ThreadPoolExecutor(1) as worker:
        job = worker.submit(attacker_queries, task, attack, seed)
        while True:
            try:
                job.result(timeout=HEARTBEAT_S)
                return
            except NotYet:
                yield


def duel(teacher, scene: Scene, defense: ASVPConfig, attack: Attack, seed: int,
         every: int = 5) -> Iterator[DuelUpdate]:
    """Distil a clean-taught and a defended-taught student in lockstep (same seed, queries, batch
    order and budget) and score both on the scene."""
    history = {"clean-taught": [], "defended-taught": []}
    for _ in queries_ready(scene.task, attack, seed):
        yield DuelUpdate(0, attack.steps, history)
    defended_run = distill(teacher, scene.task, defense, attack, seed, every)
    for clean in distill(teacher, scene.task, clean_twin(defense), attack, seed, every):
        yield DuelUpdate(clean.step, clean.total, history)  # a heartbeat between the two students
        defended = next(defended_run)
        if clean.step:
            history["clean-taught"].append((clean.step, clean.loss))
            history["defended-taught"].append((defended.step, defended.loss))
        yield DuelUpdate(clean.step, clean.total, history)
    students = restore(clean.student, scene.degraded), restore(defended.student, scene.degraded)
    scores = teacher_scores(scene, *answers(teacher, scene, defense))
    scores["student (clean teacher)"] = metrics(students[0], scene)
    scores["student (defended teacher)"] = metrics(students[1], scene)
    twins = {"teacher + ASVP": "teacher", "student (defended teacher)": "student (clean teacher)"}
    rows = []
    for name, m in scores.items():
        base = scores.get(twins.get(name, ""))
        delta = f"{m['psnr'] - base['psnr']:+.2f} dB / {m['ssim'] - base['ssim']:+.4f}" if m and base else ""
        rows.append([name, "no reference" if m is None else f"{m['psnr']:.2f}",
                     "no reference" if m is None else f"{m['ssim']:.4f}", delta])
    yield DuelUpdate(clean.total, clean.total, history, students, rows, verdict(scores))
