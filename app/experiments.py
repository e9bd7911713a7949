"""Headless sweeps: `python -m app.experiments [--tasks ...] [--teachers ...] [--seeds 0 1 2] [--quick]`.

Protocol (DESIGN.md section 4): teacher delta = metric(defended teacher) - metric(clean teacher);
student delta = metric(student taught by the defended teacher) - metric(student taught by the
clean one), same seed, queries, data order and budget. A drop only counts when the clean-taught
student beats the degraded input. Stage 1 screens ASVP settings against the output-KD attacker;
stage 2 puts the best setting (and its `exposed` twin) in front of every attacker, next to the
baselines at the same served-output distortion (MSE). Every bundled teacher of a task is swept
(our U-Net and each field family), at the same two roles of its body: an early stage and the
family's default hook at the end of the body. Everything lands in results/: sweep_<teacher>.csv,
RESULTS.md, figures and defaults.json (per teacher, the screened setting with the best protection
ratio: the app's defaults for that task and family). A `--quick` run writes to a fresh temporary folder (or
its `--out`), never to results/: only a full run may replace the stored sweep.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from app.asvp import ASVPConfig, defend
from app.baselines import calibrate, output_noise
from app.testsets import benchmark_pairs
from app.devices import CHOICES, pick_device
from app.distill import Attack, clean_twin, distill
from app.hub import bundled_for
from app.lab import SessionTeacher, session_teacher
from app.metrics import score
from app.nets import restore
from app.presets import DefenseDefaults, attack_for
from app.report import defaults, summarise, write_report
from app.tasks import TASKS

RESULTS = Path(__file__).resolve().parent.parent / "results"
# hook roles, resolved per teacher: an early body stage (our U-Net's enc2, at half resolution) is
# cheap for the teacher, the end of the body (our dec1) is costly: each is tried gently and hard.
# The U-Net's `mid` is left out because its channel gate often saturates to an all-zero map
SCREEN = [dict(layout="channel", role="early", k=1, a=2.0), dict(layout="channel", role="early", k=4, a=3.0),
          dict(layout="channel", role="late", k=1, a=1.25), dict(layout="channel", role="late", k=1, a=2.0),
          dict(layout="channel", role="late", k=4, a=3.0), dict(layout="spatial", role="late", k=1, a=2.0),
          dict(layout="channel", role="late", k=16, a=2.0, tau=0.9)]
QUICK_SCREEN = [dict(layout="channel", role="late", k=1, a=3.0), dict(layout="spatial", role="early", k=1, a=2.0)]


ATTACKER_KINDS = ("feature", "adaptive")  # stage 2, beside the screen's output KD
BASELINE_DIRECTIONS = ("random", "bottom")  # ASVP along other directions, at the best setting's cost


CALIBRATION_PASSES = 2 * (12 + 1)  # calibrate's bisection: 12 halvings and a probe, two teacher passes each


def planned_work(quick: bool, seeds: int) -> tuple[int, int]:
    """Students one teacher's sweep trains (a defended one per setting and seed, plus the clean twins:
    one per attacker kind, hooked layer and seed, shared by the settings that match), and the
    teacher's passes over the scoring pairs (two per setting, plus the baselines' calibration)."""
    screen = QUICK_SCREEN if quick else SCREEN
    settings = len(screen) + len(ATTACKER_KINDS) + 1 + len(BASELINE_DIRECTIONS) + 1  # + exposed, + output noise
    clean = len({setting["role"] for setting in screen}) + len(ATTACKER_KINDS)
    return seeds * (settings + clean), 2 * settings + 2 + (len(BASELINE_DIRECTIONS) + 1) * CALIBRATION_PASSES


def hook_roles(session: SessionTeacher) -> dict[str, str]:
    """Role -> the teacher's layer: the same two places in every family's body."""
    return {"early": session.early_layer, "late": session.default_layer}


def screened(setting: dict, roles: dict[str, str]) -> ASVPConfig:
    """A screen setting on one teacher: its role resolved to that teacher's layer."""
    fields = dict(setting)
    return ASVPConfig(layers=(roles[fields.pop("role")],), **fields)


def eval_pairs(task, n: int, crop: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `n` benchmark pairs, centre-cropped to `crop` px (target side) to keep sweeps fast."""
    out = []
    for _, degraded, target in benchmark_pairs(task, n):
        s, c = task.scale, min(crop, *target.shape[:2]) // task.scale
        i, j = (degraded.shape[0] - c) // 2, (degraded.shape[1] - c) // 2
        out.append((degraded[i:i + c, j:j + c], target[i * s:(i + c) * s, j * s:(j + c) * s]))
    return out


def _average(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) for m in ("psnr", "ssim")}


def mean_score(model, pairs, task) -> dict[str, float]:
    return _average([score(restore(model, x), y, task) for x, y in pairs])


def input_scores(pairs, task) -> dict[str, float]:
    """What the user already has: the degraded input (bicubic-upsampled for SR), scored alike."""
    return _average([score(task.input_baseline(x, y.shape), y, task) for x, y in pairs])


def teacher_score(teacher, defense: ASVPConfig, pairs, task) -> dict[str, float]:
    with defend(teacher, defense):
        return mean_score(teacher, pairs, task)


def train_student(teacher, task, defense, attack, seed):
    *_, last = distill(teacher, task, [(defense, seed)], attack, every=attack.steps)
    return last.students[0]


class Sweep:
    """One teacher's measurements, with clean-taught students cached per (attacker, layer, seed)."""

    def __init__(self, session: SessionTeacher, pairs, seeds, attack: Attack):
        self.task, self.teacher, self.pairs, self.seeds = session.task, session.model, pairs, seeds
        self.who = dict(teacher=session.source, teacher_family=session.loaded.family)
        self.role = {layer: role for role, layer in hook_roles(session).items()}
        self.attack = attack  # the task's own attacker at the sweep's budget; `measure` picks the kind
        self.inputs = input_scores(pairs, self.task)
        self._clean = {}

    def clean_student(self, attack: Attack, defense: ASVPConfig, seed: int) -> dict[str, float]:
        key = (attack, defense.layers, seed)
        if key not in self._clean:
            student = train_student(self.teacher, self.task, clean_twin(defense), attack, seed)
            self._clean[key] = mean_score(student, self.pairs, self.task)
        return self._clean[key]

    def measure(self, stage: str, kind: str, defense: ASVPConfig, attack_kind: str, sigma: float = 0.0) -> list[dict]:
        """Rows (one per seed) for one defense under one attacker; `sigma` adds output noise."""
        attack = dataclasses.replace(self.attack, kind=attack_kind)
        t_clean = teacher_score(self.teacher, clean_twin(defense), self.pairs, self.task)
        with output_noise(self.teacher, sigma):
            t_def = teacher_score(self.teacher, defense, self.pairs, self.task)
        rows = []
        for seed in self.seeds:
            s_clean = self.clean_student(attack, defense, seed)
            with output_noise(self.teacher, sigma):
                student = train_student(self.teacher, self.task, defense, attack, seed)
            s_def = mean_score(student, self.pairs, self.task)
            rows.append(dict(
                task=self.task.name, **self.who, budget=attack.steps, student=attack.student, stage=stage,
                defense=kind, attack=attack_kind, seed=seed, layer_role=self.role.get(defense.layers[0], "-"),
                layout=defense.layout, layer=defense.layers[0], k=defense.k, a=round(defense.a, 4), tau=defense.tau,
                placement=defense.placement, directions=defense.directions,
                noise_sigma=round(sigma, 5),
                input_psnr=self.inputs["psnr"], input_ssim=self.inputs["ssim"],
                teacher_clean_psnr=t_clean["psnr"], teacher_clean_ssim=t_clean["ssim"],
                teacher_psnr=t_def["psnr"], teacher_ssim=t_def["ssim"],
                student_clean_psnr=s_clean["psnr"], student_clean_ssim=s_clean["ssim"],
                student_psnr=s_def["psnr"], student_ssim=s_def["ssim"]))
        return rows


def _same(row: dict, defense: ASVPConfig) -> bool:
    return (row["layout"], row["layer"], row["k"], row["a"], row["tau"]) == (
        defense.layout, defense.layers[0], defense.k, round(defense.a, 4), defense.tau)


def served_distortion(teacher, defense, pairs, sigma: float = 0.0) -> float:
    """Mean squared change of the served output (ASVP `defense`, or output noise `sigma`).

    The cost the baselines are matched on: unlike the PSNR against ground truth, which a
    perturbation can even raise, it grows with the strength of any defense.
    """
    clean = [restore(teacher, x) for x, _ in pairs]
    with output_noise(teacher, sigma), defend(teacher, defense):
        return float(np.mean([np.mean((restore(teacher, x) - c) ** 2) for (x, _), c in zip(pairs, clean)]))


def _setup(task, source: str, budget: int | None, quick: bool, device: torch.device):
    """A teacher's session on `device`, the pairs its students are scored on, and the sweep's attacker."""
    session = session_teacher(task.name, source)
    session.model.to(device)
    pairs = eval_pairs(task, n=2 if quick else 4, crop=128 if quick else 192)
    own = attack_for(task.name)
    return session, pairs, dataclasses.replace(own, steps=budget or own.steps, queries=16 if quick else own.queries)


def seconds_per_student(session: SessionTeacher, pairs, attack: Attack) -> float:
    """One student's wall time here: the teacher's answers, a short run's steps scaled to the
    budget, and scoring the student (distill reports once the teacher has answered, so one run
    times both parts)."""
    defense, steps = clean_twin(ASVPConfig(layers=(session.default_layer,))), min(attack.steps, 20)
    train_student(session.model, session.task, defense, dataclasses.replace(attack, steps=1), seed=0)  # queries made
    marks = [time.perf_counter()]
    for progress in distill(session.model, session.task, [(defense, 0)], dataclasses.replace(attack, steps=steps),
                            every=steps):
        marks.append(time.perf_counter())
    mean_score(progress.students[0], pairs, session.task)
    answers, run, scoring = marks[1] - marks[0], marks[2] - marks[1], time.perf_counter() - marks[2]
    return answers + run * attack.steps / steps + scoring


def plan(teachers: list[tuple[str, str]], seeds: int, budget: int | None, quick: bool, device: torch.device) -> str:
    """What a run will cost before it starts: students per teacher and the estimated time here."""
    lines, total_students, total_s = [], 0, 0.0
    for task_name, source in teachers:
        session, pairs, attack = _setup(TASKS[task_name], source, budget, quick, device)
        n, passes = planned_work(quick, seeds)
        mean_score(session.model, pairs, session.task)  # a first pass warms the kernels up
        start = time.perf_counter()
        mean_score(session.model, pairs, session.task)
        one_pass = time.perf_counter() - start
        seconds = n * seconds_per_student(session, pairs, attack) + passes * one_pass
        lines.append(f"{source}: {n} students of {attack.steps} steps, about {seconds / 60:.1f} min")
        total_students, total_s = total_students + n, total_s + seconds
    lines.append(f"total: {total_students} students, about {total_s / 60:.1f} min on {device.type} "
                 f"with {torch.get_num_threads()} thread(s)")
    return "\n".join(lines)


def run_teacher(task, source: str, seeds, budget: int | None, quick: bool,
                device: torch.device = torch.device("cpu")) -> list[dict]:
    """Stage 1 screen, stage 2 attackers, baselines for one bundled teacher of a task: one row per
    student pair (budget None: the task's own default); teacher and students run on `device`."""
    session, pairs, attack = _setup(task, source, budget, quick, device)
    teacher, roles = session.model, hook_roles(session)
    sweep = Sweep(session, pairs, seeds, attack)
    rows = []
    for setting in QUICK_SCREEN if quick else SCREEN:
        rows += sweep.measure("screen", "asvp", screened(setting, roles), "output")
        print(f"{source} screened {setting}", flush=True)
    best = DefenseDefaults(**defaults(summarise(pd.DataFrame(rows)))[source]).config
    rows += [dict(r, stage="attackers") for r in rows if r["stage"] == "screen" and _same(r, best)]
    for kind in ATTACKER_KINDS:
        rows += sweep.measure("attackers", "asvp", best, kind)
    # exposed features reach only a feature-KD attacker; output-only attackers see the clean teacher
    # (bit-identical students, tested in tests/test_distill.py), so only feature KD is measured
    rows += sweep.measure("attackers", "asvp", dataclasses.replace(best, placement="exposed"), "feature")
    cost = served_distortion(teacher, best, pairs)
    for directions in BASELINE_DIRECTIONS:
        probe = lambda a, d=directions: served_distortion(teacher, dataclasses.replace(best, directions=d, a=a), pairs)
        rows += sweep.measure("baselines", f"asvp-{directions}",
                              dataclasses.replace(best, directions=directions, a=calibrate(probe, cost, 1.0, 50.0)), "output")
    identity = clean_twin(best)
    sigma = calibrate(lambda s: served_distortion(teacher, identity, pairs, s), cost, 1e-4, 0.5)
    rows += sweep.measure("baselines", "output-noise", identity, "output", sigma=sigma)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--teachers", nargs="*", default=None,
                   help="bundled teachers to sweep (default: every bundled teacher of the tasks)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=None,
                   help="student steps, the same for every student of a task (default: the task's own)")
    p.add_argument("--quick", action="store_true", help="two settings, small crops, few queries: minutes, for tests")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: {RESULTS.name}/ for a full run, a new temporary folder for --quick)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; the stored results ran with 1 (other counts round differently, and "
                        "students trained on them match only within their spread). Run tasks side by side instead")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from existing sweep files")
    p.add_argument("--plan", action="store_true", help="print how many students the run trains and its estimated "
                   "time here, then stop")
    p.add_argument("--device", choices=CHOICES, default="auto", help="where teachers and students run (auto: CUDA if "
                   "present; the stored results ran on the CPU, and a GPU's rounding matches them within the spread)")
    args = p.parse_args(argv)
    for name in args.tasks:
        if name not in TASKS:
            p.error(f"unknown task {name}; choose from {', '.join(TASKS)}")
    unknown = set(args.teachers or ()) - {t for name in args.tasks for t in bundled_for(name)}
    if unknown:
        p.error(f"no bundled teacher {', '.join(sorted(unknown))} among the tasks {', '.join(args.tasks)}")
    if args.quick and args.out is not None and args.out.resolve() == RESULTS.resolve():
        p.error(f"--quick never writes {RESULTS.name}/: the stored sweep is replaced only by a full run")
    device, note = pick_device(args.device)
    if note:
        print(note, flush=True)
    torch.set_num_threads(args.threads)
    teachers = [(name, source) for name in ([] if args.report_only else args.tasks)
                for source in bundled_for(name) if args.teachers is None or source in args.teachers]
    if args.plan:
        print(plan(teachers, len(args.seeds), args.budget, args.quick, device))
        return
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="asvp-quick-")) if args.quick else RESULTS
    print(f"writing to {args.out}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, source in teachers:
        rows = run_teacher(TASKS[name], source, args.seeds, args.budget, args.quick, device)
        with open(args.out / f"sweep_{source}.csv", "w", newline="") as f:  # one CSV a teacher: re-run alone
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if not any(args.out.glob("sweep_*.csv")):
        p.error(f"no sweep_*.csv in {args.out}: nothing to report")
    write_report(args.out)


if __name__ == "__main__":
    main()
