"""The measurements behind one sweep row: a defense under one attacker, for each seed.

Protocol (docs/protocol.md section 1): teacher delta = metric(defended teacher) - metric(clean teacher);
student delta = metric(student taught by the defended teacher) - metric(student taught by the
clean one), same seed, queries, data order and budget. A drop only counts when the clean-taught
student beats the degraded input. Every student here trains alone (a batch of one runs plain
kernels), so a row rerun on the same kind of CPU matches bit for bit.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from app.attack.distill import (Answered, Attack, answered, ask_teacher, asked, attacker_queries, exposed_answered,
                                no_theft, query_images, taught)
from app.attack.features import teacher_features
from app.data.benchmarks import benchmark_pairs, folder_pairs, pairs_checksum
from app.data.tasks import TASKS
from app.defense.asvp import defend
from app.defense.baselines import calibrate, output_noise
from app.defense.bound import rms
from app.defense.setting import Setting
from app.study.passes import kept_pass
from app.study.resumes import keep_students_within, resumable
from app.study.scores import input_scores, mean_score, scored
from app.teachers.networks import restore
from app.teachers.sessions import SessionTeacher, Source, session_teacher


KINDS = ("asvp", "asvp-random", "asvp-bottom", "output-noise")  # the defense of a row; baselines match a cost


@dataclass(frozen=True)
class Pairs:
    """Which benchmark pairs the students are scored on: the first `n`, centre-cropped to `crop` px, of the
    task's benchmark or of a researcher's `folder` (input/ and target/, app.data.benchmarks.folder_pairs)."""

    n: int = 4
    crop: int = 192
    folder: str = ""

    def key(self) -> dict:
        """What rows scored on these pairs depend on: a folder by its contents (the task's own benchmark
        adds nothing, so rows stored before folders existed keep their keys)."""
        plain = dict(n=self.n, crop=self.crop)
        return {**plain, "folder": pairs_checksum(self.folder)} if self.folder else plain


@dataclass(frozen=True)
class Row:
    """One sweep row: a defense (or a baseline matched to `defense`'s served cost) under one attacker."""

    task: str
    teacher: Source  # a bundled teacher's name, a Hub source or a local checkpoint
    stage: str  # screen, attackers, baselines
    kind: str  # one of KINDS
    defense: Setting  # for a baseline: the setting whose served-output distortion it matches
    attack: Attack
    pairs: Pairs = Pairs()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown row kind {self.kind!r}; choose one of {', '.join(KINDS)}")


def eval_pairs(task, pairs: Pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `pairs.n` pairs, centre-cropped to `pairs.crop` px (target side) to keep sweeps fast."""
    found = (folder_pairs(pairs.folder, task.scale)[:pairs.n] if pairs.folder else benchmark_pairs(task, pairs.n))
    out = []
    for _, degraded, target in found:
        s, c = task.scale, min(pairs.crop, *target.shape[:2]) // task.scale
        i, j = (degraded.shape[0] - c) // 2, (degraded.shape[1] - c) // 2
        out.append((degraded[i:i + c, j:j + c], target[i * s:(i + c) * s, j * s:(j + c) * s]))
    return out


def teacher_score(teacher, defense: Setting, pairs, task, answers: list[np.ndarray] | None = None) -> dict[str, float]:
    with defend(teacher, defense):
        return mean_score(teacher, pairs, task, answers)


def student_scores(row: Row, served: Answered, device: torch.device) -> dict[str, float]:
    """The scores of the student `row`'s attacker trains on `served`: a long one goes on from its filed state, if a
    stopped search left one (app.study.resumes; a finished one trains no step)."""
    session, pairs, answers = teacher_on(row.task, row.teacher, row.pairs, device)
    keep = resumable(row.task, row.teacher, row.attack, served, device)
    *_, last = taught(session.task, [served], row.attack, every=row.attack.steps, resumable=keep)
    if keep:
        keep_students_within()
    return mean_score(last.students[0], pairs, session.task, answers)


def served_to(teacher, defense: Setting, x: torch.Tensor, seed: int, unmoved: torch.Tensor) -> Answered:
    """What one seed's queries `x` get under `defense`. The clean setting serves the clean answers `unmoved`, untouched
    bit for bit, beside the features read off forwards cut short at its layers: a heavy teacher's search is mostly
    its answers (an exposed setting amplifies these features, `seed_served`)."""
    if not defense.is_identity:
        return answered(teacher, x, defense, seed)
    return Answered(seed, x.to(unmoved.device), unmoved, teacher_features(teacher, x, defense))


SERVED_SHARE = 0.4  # of this machine's memory, over its cores, that a worker keeps served (at most SERVED_MOST_GB)
SERVED_MOST_GB = 4.0  # x4plus: ~0.1 GB a seed and setting, 0.3 GB exposed at all its stages
_served: OrderedDict[tuple, Answered] = OrderedDict()


def seed_served(row: Row, defense: Setting, seed: int, device: torch.device) -> Answered:
    """What the queries of `row`'s attacker for `seed` get under `defense` (no output noise), asked once per worker
    and kept while they fit in `served_budget`: the answers depend on the queries, never on what an attacker does
    with them, so the attackers and budgets of one setting (and every clean-taught twin at its layers) share one
    teacher pass a seed, and an exposed setting needs none beyond its layers' clean one. On a heavy teacher the
    passes are nearly all of a row's time."""
    key = served_key(row, defense, seed, device)
    if (kept := _served.get(key)) is not None:
        _served.move_to_end(key)
        return kept
    if defense.placement == "exposed" and not defense.is_identity:  # the clean maps, amplified: no forward at all
        served = exposed_answered(seed_served(row, defense.clean, seed, device), defense)
    else:
        served = filed_served(row, defense, seed, device)
    _served[key] = served
    while len(_served) > 1 and kept_bytes(_served.values()) > served_budget():
        _served.popitem(last=False)
    return served


def filed_served(row: Row, defense: Setting, seed: int, device: torch.device) -> Answered:
    """`served_to` the queries of `row`'s attacker for `seed`, read back where this machine has filed the pass
    (app.study.passes); the clean answers it shares are filed once, apart."""
    session, _, _ = teacher_on(row.task, row.teacher, row.pairs, device)
    x = query_images(session.task, row.attack.queries, row.attack.patch, row.attack.variants, seed)
    unmoved = seed_answers(row, seed, device)

    def ask() -> dict[str, torch.Tensor]:
        served = served_to(session.model, defense, x, seed, unmoved)
        moved = {} if served.answers is unmoved else {"answers": served.answers}
        return {**moved, **{f"features.{i}": f for i, f in enumerate(served.features)}}

    asked = dict(served=dataclasses.asdict(defense), device=str(device), queries=row.attack.queries,
                 patch=row.attack.patch, variants=row.attack.variants, seed=seed)
    tensors = kept_pass(row.task, row.teacher, asked, ask, device)
    features = [tensors[f"features.{i}"] for i in range(len(defense.layers))]
    return Answered(seed, x.to(device), tensors.get("answers", unmoved), features)


def served_key(row: Row, defense: Setting, seed: int, device: torch.device) -> tuple:
    """What served answers depend on: the teacher, the setting and the queries (not what an attacker does with them)."""
    return (row.task, row.teacher, row.pairs, device, defense, row.attack.queries, row.attack.patch,
            row.attack.variants, seed)


def kept_bytes(kept) -> int:
    """The memory of what is kept served, each tensor once (the clean answers are shared by many settings)."""
    tensors = {t.untyped_storage().data_ptr(): t for served in kept
               for t in (served.queries, served.answers, *served.features)}
    return sum(t.untyped_storage().nbytes() for t in tensors.values())


@lru_cache(maxsize=1)
def served_budget() -> int:
    """Bytes a worker may keep served: a share of this machine's memory over its cores, every core a worker."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(SERVED_SHARE * memory / (os.cpu_count() or 1), SERVED_MOST_GB * 2**30))


@lru_cache(maxsize=5)  # a confirmed point's seeds; an SR x4 teacher's answers to 96 queries are 42 MB
def clean_answers(task: str, teacher: Source, pairs: Pairs, device: torch.device, queries: int, patch: int,
                  variants: int, seed: int) -> torch.Tensor:
    """The clean teacher's answers to one seed's queries, asked once per worker: every row of the teacher that
    sends these queries measures its served answers against them (the clean setting serves the answers
    untouched, bit for bit, whichever layer it hooks), and filed on this machine (app.study.passes)."""
    session, _, _ = teacher_on(task, teacher, pairs, device)
    x = query_images(session.task, queries, patch, variants, seed).to(device)
    ask = lambda: {"answers": ask_teacher(session.model, x, Setting(a=1.0, layers=(session.default_layer,)))[0]}
    asked = dict(answers="clean", device=str(device), queries=queries, patch=patch, variants=variants, seed=seed)
    return kept_pass(task, teacher, asked, ask, device)["answers"]


def seed_answers(row: Row, seed: int, device: torch.device) -> torch.Tensor:
    """The clean answers to the queries of `row`'s attacker for `seed` (`clean_answers`)."""
    return clean_answers(row.task, row.teacher, row.pairs, device, row.attack.queries, row.attack.patch,
                         row.attack.variants, seed)


def served_distortion(teacher, defense, pairs, clean: list[np.ndarray], sigma: float = 0.0) -> float:
    """Mean squared change of the served output (ASVP `defense`, or output noise `sigma`) from the teacher's
    `clean` answers on the pairs.

    The cost the baselines are matched on: unlike the PSNR against ground truth, which a
    perturbation can even raise, it grows with the strength of any defense.
    """
    with output_noise(teacher, sigma), defend(teacher, defense):
        return float(np.mean([np.mean((restore(teacher, x) - c) ** 2) for (x, _), c in zip(pairs, clean)]))


def hook_roles(session: SessionTeacher) -> dict[str, str]:
    """Role -> the teacher's layer: the same two places in every family's body."""
    return {"early": session.early_layer, "late": session.default_layer}


@lru_cache(maxsize=4)
def teacher_on(task: str, teacher: Source, pairs: Pairs,
               device: torch.device) -> tuple[SessionTeacher, list, list[np.ndarray]]:
    """A teacher, its scoring pairs and its clean answers on them, once per worker process (hooks come and
    go with `defend`). The search's command line has admitted the teacher under its cost budget."""
    session = session_teacher(task, teacher, budget=None)
    session.model.to(device)
    scored = eval_pairs(TASKS[task], pairs)
    return session, scored, [restore(session.model, x) for x, _ in scored]


def clean_student_scores(row: Row, seed: int, device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """PSNR/SSIM (to the ground truth and to the clean teacher) of the student the undefended teacher of
    `row` teaches with `seed`."""
    return student_scores(row, seed_served(row, row.defense.clean, seed, device), device)


@lru_cache(maxsize=64)
def resolved(task: str, teacher: Source, pairs: Pairs, kind: str, defense: Setting,
             device: torch.device) -> tuple[Setting, float]:
    """The defense a row of `kind` serves and its output-noise sigma: a baseline is calibrated to the served
    distortion of the row's ASVP setting (bisection: deterministic), once per worker for all its attackers and
    seeds (a dozen teacher passes over the pairs)."""
    if kind == "asvp":
        return defense, 0.0
    session, scored_pairs, clean = teacher_on(task, teacher, pairs, device)
    model = session.model
    cost = lambda setting, sigma=0.0: served_distortion(model, setting, scored_pairs, clean, sigma)
    if kind == "output-noise":
        identity = dataclasses.replace(defense, a=1.0)  # recorded as the setting whose cost the noise matches
        return identity, calibrate(lambda s: cost(identity, s), cost(defense), 1e-4, 0.5)
    directions = kind.removeprefix("asvp-")
    probe = lambda a: cost(dataclasses.replace(defense, directions=directions, a=a))
    return dataclasses.replace(defense, directions=directions, a=calibrate(probe, cost(defense), 1.0, 50.0)), 0.0


@lru_cache(maxsize=64)
def defended_scores(task: str, teacher: Source, pairs: Pairs, defense: Setting, sigma: float,
                    device: torch.device) -> dict[str, float]:
    """The defended teacher's scores on the pairs (to the ground truth and to its clean answers), once per worker
    for all the attackers and seeds of its setting."""
    session, scored_pairs, answers = teacher_on(task, teacher, pairs, device)
    with output_noise(session.model, sigma):
        return teacher_score(session.model, defense, scored_pairs, session.task, answers)


def no_theft_scores(task_name: str, teacher: Source, pairs: Pairs, attack: Attack, seed: int,
                    device: torch.device = torch.device("cpu")) -> dict:
    """A row for the student that steals nothing (app.attack.distill.no_theft) with this seed, scored as every
    student is: against the ground truth and, since fidelity is per teacher, against this teacher's answers."""
    session, scored, answers = teacher_on(task_name, teacher, pairs, device)
    *_, last = no_theft(session.task, attack, [seed], every=attack.steps, device=device)
    found = mean_score(last.students[0], scored, session.task, answers)
    return dict(task=task_name, teacher=str(teacher), attacker=attack.label, budget=attack.steps,
                student=attack.student, seed=seed, **{f"no_theft_{m}": v for m, v in found.items()})


def fidelity_columns(inputs: dict, defended_teacher: dict, clean_student: dict, student: dict) -> dict[str, float]:
    """A row's scores against the clean teacher's answer (the clean teacher's own would be infinite)."""
    return {f"{who}_fidelity_{m}": scores[f"fidelity_{m}"] for m in ("psnr", "ssim")
            for who, scores in (("input", inputs), ("teacher", defended_teacher), ("student_clean", clean_student),
                                ("student", student))}


def measure(row: Row, seeds: list[int], *clean: dict[str, float],
            device: torch.device = torch.device("cpu")) -> list[dict]:
    """Rows of the CSV (one per seed) for one defense under one attacker; `clean` holds the
    clean-taught students' scores of the same seeds."""
    session, pairs, answers = teacher_on(row.task, row.teacher, row.pairs, device)
    teacher, task = session.model, session.task
    defense, sigma = resolved(row.task, row.teacher, row.pairs, row.kind, row.defense, device)
    role = {layer: name for name, layer in hook_roles(session).items()}
    inputs = input_scores(pairs, task, answers)
    t_clean = scored(answers, pairs, task)  # the clean setting serves the answers untouched, bit for bit
    t_def = defended_scores(row.task, row.teacher, row.pairs, defense, sigma, device)
    out = []
    for seed, s_clean in zip(seeds, clean):
        if sigma:  # the answers the student learns from are the ones served, noise and all
            with output_noise(teacher, sigma):
                served = asked(teacher, task, defense, row.attack, seed)
        else:
            served = seed_served(row, defense, seed, device)
        unmoved = seed_answers(row, seed, device)
        s_def = student_scores(row, served, device)
        out.append(dict(
            task=row.task, teacher=str(row.teacher), teacher_family=session.loaded.family.title, budget=row.attack.steps,
            student=row.attack.student, stage=row.stage, defense=row.kind, attack=row.attack.kind,
            attacker=row.attack.label, seed=seed,
            layer_role="+".join(role.get(n, "-") for n in defense.layers), **defense.row(),
            noise_sigma=round(sigma, 5), input_psnr=inputs["psnr"], input_ssim=inputs["ssim"],
            teacher_clean_psnr=t_clean["psnr"], teacher_clean_ssim=t_clean["ssim"],
            teacher_psnr=t_def["psnr"], teacher_ssim=t_def["ssim"],
            student_clean_psnr=s_clean["psnr"], student_clean_ssim=s_clean["ssim"],
            student_psnr=s_def["psnr"], student_ssim=s_def["ssim"],
            served_rms=rms(served.answers - unmoved),  # how far the served answers moved: the bound's delta
            student_clean_rms=s_clean["rms"],
            student_rms=s_def["rms"], **fidelity_columns(inputs, t_def, s_clean, s_def)))
    return out


def seconds_per_student(session: SessionTeacher, pairs, attack: Attack) -> tuple[float, float]:
    """One student's wall time here, in two parts: the teacher's answers to its queries (a batch timed, scaled to all:
    a heavy teacher takes a minute for all of them; rows of one setting share them, `seed_served`), and its steps
    (a short run's scaled to the budget) with its scoring."""
    defense, steps = Setting(layers=(session.default_layer,)).clean, min(attack.steps, 20)
    x = attacker_queries(session.task, attack, 0)[:attack.batch]  # made (and cached) before any timing
    ask_teacher(session.model, x[:1], defense)  # the first forward's set-up, untimed
    marks = [time.perf_counter()]
    batch = Answered(0, x, *ask_teacher(session.model, x, defense))
    marks.append(time.perf_counter())
    *_, last = taught(session.task, [batch], dataclasses.replace(attack, steps=steps), every=steps)
    marks.append(time.perf_counter())
    mean_score(last.students[0], pairs, session.task)
    answers, run, scoring = marks[1] - marks[0], marks[2] - marks[1], time.perf_counter() - marks[2]
    return answers * attack.queries / len(x), run * attack.steps / steps + scoring
