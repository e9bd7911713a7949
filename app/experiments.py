"""Headless sweeps: `python -m app.experiments [--tasks ...] [--teachers ...] [--seeds 0 1 2] [--quick]`.

Stage 1 screens ASVP settings against the output-KD attacker; stage 2 puts the best setting (and
its `exposed` twin) in front of every attacker, next to the baselines at the same served-output
distortion (MSE); app.measure holds the protocol of one row. Every bundled teacher of a task is
swept (our U-Net and each field family), at the same two roles of its body: an early stage and the
family's default hook at the end of the body. Rows run as Ray tasks (embedded on this machine, or
on a cluster with `--address`), stream into results/sweep_<teacher>.csv as they finish, and a
rerun trains only the rows missing there (app.sweep). RESULTS.md, figures and defaults.json (per
teacher, the screened setting with the best protection ratio: the app's defaults for that task and
family) are rebuilt from the CSV files. A `--quick` run writes to a fresh temporary folder (or its
`--out`), never to results/: only a full run may replace the stored sweep.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from app.asvp import ASVPConfig
from app.devices import CHOICES, pick_device
from app.distill import Attack, clean_twin, distill
from app.hub import bundled_for
from app.lab import SessionTeacher, session_teacher
from app.measure import Pairs, Row, hook_roles, mean_score, teacher_on, train_student
from app.presets import DefenseDefaults, attack_for
from app.report import defaults, summarise, write_report
from app.sweep import Store, ray_session, row_key, run_rows
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


def screened(setting: dict, roles: dict[str, str]) -> ASVPConfig:
    """A screen setting on one teacher: its role resolved to that teacher's layer."""
    fields = dict(setting)
    return ASVPConfig(layers=(roles[fields.pop("role")],), **fields)


def sweep_attack(task_name: str, budget: int | None, quick: bool) -> Attack:
    """The task's own attacker at the sweep's budget (None: the task's default)."""
    own = attack_for(task_name)
    return dataclasses.replace(own, steps=budget or own.steps, queries=16 if quick else own.queries)


def sweep_pairs(quick: bool) -> Pairs:
    return Pairs(n=2, crop=128) if quick else Pairs()


def _setup(task, source: str, budget: int | None, quick: bool, device: torch.device):
    """A teacher's session on `device`, the pairs its students are scored on, and the sweep's attacker."""
    return *teacher_on(task.name, source, sweep_pairs(quick), device), sweep_attack(task.name, budget, quick)


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


def screen_rows(task_name: str, source: str, budget: int | None, quick: bool) -> list[Row]:
    """Stage 1 of one teacher: every screen setting at its role of that teacher's body, output KD."""
    roles, attack = hook_roles(session_teacher(task_name, source)), sweep_attack(task_name, budget, quick)
    return [Row(task_name, source, "screen", "asvp", screened(setting, roles), attack, sweep_pairs(quick))
            for setting in (QUICK_SCREEN if quick else SCREEN)]


def stage_two(screen: list[Row], measured: list[dict]) -> tuple[Row, list[Row]]:
    """The best screened setting as an `attackers` row (its output-KD students are the screen's),
    and the rows it still needs: every other attacker, its exposed twin under feature KD (exposed
    features reach no output-only attacker: bit-identical students, tested in tests/test_distill.py),
    and the baselines matched to its served-output distortion."""
    first = screen[0]
    best = DefenseDefaults(**defaults(summarise(pd.DataFrame(measured)))[first.teacher]).config
    row = lambda stage, kind, defense, attack_kind: Row(first.task, first.teacher, stage, kind, defense,
                                                       dataclasses.replace(first.attack, kind=attack_kind), first.pairs)
    return row("attackers", "asvp", best, "output"), (
        [row("attackers", "asvp", best, kind) for kind in ATTACKER_KINDS]
        + [row("attackers", "asvp", dataclasses.replace(best, placement="exposed"), "feature")]
        + [row("baselines", f"asvp-{d}", best, "output") for d in BASELINE_DIRECTIONS]
        + [row("baselines", "output-noise", best, "output")])


def run(teachers: list[tuple[str, str]], seeds: list[int], budget: int | None, quick: bool, out: Path,
        device: torch.device, address: str | None, threads: int) -> None:
    """Sweep every teacher on Ray, resuming from the rows already in `out`; each CSV ends in the
    protocol's order (screen, attackers, baselines)."""
    store = Store(out)
    for _, source in teachers:
        store.load(source)
    with ray_session(address, threads) as ray:
        screens = {source: screen_rows(task, source, budget, quick) for task, source in teachers}
        measured = run_rows(ray, [r for rows in screens.values() for r in rows], seeds, store, threads, device,
                            desc="screen")
        order, rest = {}, []
        for source, rows in screens.items():
            best, more = stage_two(rows, [r for r in measured if r["teacher"] == source])
            twin = {row_key(dataclasses.replace(best, stage="screen"), seed): row_key(best, seed) for seed in seeds}
            store.add(source, [dict(r, stage="attackers", key=twin[r["key"]]) for r in measured
                               if r["key"] in twin and twin[r["key"]] not in store.done(source)])
            order[source], rest = [*rows, best, *more], rest + more
        run_rows(ray, rest, seeds, store, threads, device, desc="attackers and baselines")
    for source, rows in order.items():
        by_key = {r["key"]: r for r in store.rows[source]}
        store.write(source, [by_key[row_key(row, seed)] for row in rows for seed in seeds])


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
                   help="torch threads per Ray task; the stored results ran with 1 (other counts round differently, "
                        "and students trained on them match only within their spread)")
    p.add_argument("--address", default=None, help="a Ray cluster to join (default: Ray embedded on this machine, "
                   "one task per core)")
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
    if teachers:
        start = time.perf_counter()
        run(teachers, args.seeds, args.budget, args.quick, args.out, device, args.address, args.threads)
        print(f"swept {len(teachers)} teacher(s) in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if not any(args.out.glob("sweep_*.csv")):
        p.error(f"no sweep_*.csv in {args.out}: nothing to report")
    write_report(args.out)


if __name__ == "__main__":
    main()
