"""The definitive search: `python -m app.experiments [--tasks ...] [--teachers ...] [--seeds ...] [--quick]`.

Per bundled teacher (our U-Net and each field family), app.study.grid's stages: the teacher cost of
every in-line grid setting (stage x layout x k x a; teacher passes only, costs_<teacher>.csv); a
screen with the first seed (the strongest affordable setting per stage, layout and k, costly
anchors, and exposed settings under a feature-reading attacker); every point on a frontier of
(teacher cost, student drop) confirmed with every seed; the best in-line and the best exposed
setting under every attacker, next to the baselines at the same served-output distortion; and a
budget curve (150, 600, 2400 steps) with the first three seeds. app.study.protocol holds the protocol of
one row. Rows run as Ray tasks (embedded on this machine, or on a cluster with `--address`),
stream into results/sweep_<teacher>.csv as they finish, and a rerun trains only the rows missing
there (app.study.engine). RESULTS.md, figures and defaults.json are rebuilt from the CSV files. A
`--quick` run (one stage, a corner of the grid, three attackers) writes to a fresh temporary folder
(or its `--out`), never to results/: only a full run may replace the stored search.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm import tqdm

from app.attack.attackers import ATTACKERS, attack_for, attacker
from app.attack.distill import Attack, distill
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.devices import CHOICES, pick_device
from app.study.engine import Store, Workers, ray_session, row_key, run_rows, stamp
from app.study.findings import summarise
from app.study.grid import (CONFIRM_SEEDS, EXPOSED_SCREEN_ATTACKER, frontier, grid, screened_exposed, screened_inline,
                            teacher_costs)
from app.study.protocol import Pairs, Row, mean_score, teacher_on, train_student
from app.study.report import write_report
from app.study.thresholds import negligible
from app.teachers.registry import bundled_for
from app.teachers.sessions import SessionTeacher, session_teacher


RESULTS = Path(__file__).resolve().parents[2] / "results"
BUDGETS = (150, 600, 2400)  # the budget curve: does the damage persist, or do students learn through it?
QUICK_ATTACKERS = ("output L1", "feature L1 x1", "FitNet MSE")
BASELINE_DIRECTIONS = ("random", "bottom")  # ASVP along other directions, at the best setting's cost


@dataclass
class Search:
    """One teacher's search: its session, attacker, stages and the rows of each stage as they come."""

    task: str
    source: str
    attack: Attack  # the task's own attacker at the sweep's budget
    pairs: Pairs
    stages: list[str]
    quick: bool

    def row(self, stage: str, defense: Setting, attack: Attack, kind: str = "asvp") -> Row:
        return Row(self.task, self.source, stage, kind, defense, attack, self.pairs)

    def attackers(self) -> list[str]:
        return list(QUICK_ATTACKERS if self.quick else ATTACKERS)


def sweep_attack(task_name: str, budget: int | None, quick: bool) -> Attack:
    """The task's own attacker at the sweep's budget (None: the task's default)."""
    own = attack_for(task_name)
    return dataclasses.replace(own, steps=budget or own.steps, queries=16 if quick else own.queries)


def sweep_pairs(quick: bool) -> Pairs:
    return Pairs(n=2, crop=128) if quick else Pairs()


def searches(teachers: list[tuple[str, str]], budget: int | None, quick: bool) -> list[Search]:
    out = []
    for task, source in teachers:
        session = session_teacher(task, source)
        stages = [session.default_layer] if quick else session.stages
        out.append(Search(task, source, sweep_attack(task, budget, quick), sweep_pairs(quick), stages, quick))
    return out


def costs_on_file(search: Search, out: Path) -> pd.DataFrame | None:
    """costs_<teacher>.csv, while its grid, teacher and recipe are the current ones."""
    path = out / f"costs_{search.source}.csv"
    if not path.exists():
        return None
    on_file = pd.read_csv(path)
    fresh = len(on_file) == len(grid(search.stages, search.quick)) and all(
        (on_file[k] == v).all() for k, v in stamp(search.task, search.source).items())
    return on_file if fresh else None


def cost_grid(search: Search, device: torch.device) -> pd.DataFrame:
    """The teacher cost of every in-line grid setting (teacher passes only: one Ray task per teacher)."""
    session, pairs = teacher_on(search.task, search.source, search.pairs, device)
    return teacher_costs(session.model, session.task, grid(search.stages, search.quick), pairs)


def costs(ray, plans: list[Search], out: Path, workers: Workers) -> dict[str, pd.DataFrame]:
    """Every teacher's cost grid: read back from its costs_<teacher>.csv, or computed in parallel
    and stored there (a plan's costs serve the run that follows)."""
    found = {s.source: costs_on_file(s, out) for s in plans}
    task = workers.remote(ray, cost_grid)
    pending = {task.remote(s): s for s in plans if found[s.source] is None}
    with tqdm(total=len(pending), desc="teacher costs", unit="teacher") as bar:
        while pending:
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            search = pending.pop(ready)
            found[search.source] = ray.get(ready).assign(**stamp(search.task, search.source))
            found[search.source].to_csv(out / f"costs_{search.source}.csv", index=False)
            bar.update()
    return found


def screen_rows(search: Search, costs: pd.DataFrame) -> list[Row]:
    """Stage 1: the affordable-strongest in-line settings and anchors under the task's own output
    attacker, and the exposed settings under a feature-reading one."""
    feature = attacker(search.attack, EXPOSED_SCREEN_ATTACKER)
    exposed = screened_exposed(search.stages)
    if search.quick:
        exposed = exposed[:1]
    return ([search.row("screen", d, search.attack) for d in screened_inline(costs)]
            + [search.row("screen", d, feature) for d in exposed])


def confirm_rows(screen: list[Row], measured: list[dict]) -> list[Row]:
    """Every screened point on the Pareto frontier of its attacker (in-line and exposed alike)."""
    s = summarise(pd.DataFrame(measured))
    keep = set()
    for _, grp in s.groupby("attacker", sort=False):
        keep |= {(Setting.from_row(r), r.attacker)
                 for r in frontier(grp[grp.learned] if grp.learned.any() else grp).itertuples()}
    return [row for row in screen if (row.defense, row.attack.label) in keep]


def best_defenses(search: Search, measured: list[dict]) -> tuple[Setting, Setting]:
    """The confirmed in-line setting with the largest student drop at a negligible teacher cost
    (else the cheapest), and the exposed setting with the largest drop."""
    s = summarise(pd.DataFrame(measured))
    inline, exposed = s[s.placement == "inline"], s[s.placement == "exposed"]
    cheap = inline[negligible(inline.t_dpsnr, inline.t_dssim) & inline.learned]
    pick = cheap.loc[cheap.s_dpsnr.idxmin()] if not cheap.empty else inline.loc[inline.t_dpsnr.idxmax()]
    return Setting.from_row(pick), Setting.from_row(exposed.loc[exposed.s_dpsnr.idxmin()])


def attacker_rows(search: Search, inline: Setting, exposed: Setting) -> list[Row]:
    """The best in-line setting under every attacker, the best exposed one under every attacker that
    reads features (exposed features reach no output-only attacker: bit-identical students, tested),
    the exposed features of every stage at once, and the baselines at the in-line setting's cost."""
    rows = []
    for name in search.attackers():
        attack = attacker(search.attack, name)
        rows.append(search.row("attackers", inline, attack))
        if attack.reads_features:
            rows.append(search.row("attackers", exposed, attack))
    every_stage = dataclasses.replace(exposed, layers=tuple(search.stages))
    rows.append(search.row("attackers", every_stage, attacker(search.attack, EXPOSED_SCREEN_ATTACKER)))
    rows += [search.row("baselines", inline, search.attack, f"asvp-{d}") for d in BASELINE_DIRECTIONS]
    return rows + [search.row("baselines", inline, search.attack, "output-noise")]


def curve_rows(search: Search, inline: Setting, exposed: Setting, budgets: tuple[int, ...]) -> list[Row]:
    """The budget curve: the best in-line setting under the task's attacker and the adaptive one,
    the best exposed setting under feature KD, at every budget."""
    pairs = [(inline, search.attack), (inline, attacker(search.attack, "adaptive") if not search.quick
                                       else search.attack), (exposed, attacker(search.attack, EXPOSED_SCREEN_ATTACKER))]
    return [search.row("budget", d, dataclasses.replace(a, steps=b)) for d, a in dict.fromkeys(pairs) for b in budgets]


def stages(plans: list[Search], seeds: list[int], budgets: tuple[int, ...], grids: dict[str, pd.DataFrame],
           measured: Callable[[list[Row], list[int], str], list[dict] | None]) -> dict[str, list[str]] | None:
    """The search's stages in order: screen (first seed), frontier confirmed (every seed), attackers
    and baselines (every seed), budget curve (first three seeds). `measured(rows, seeds, stage)` gives
    the rows on file once the missing ones are measured (a run), or None where some are missing (a
    plan: the later stages follow from them, so the walk stops). Returns each teacher's row keys in
    the protocol's order, or None."""
    screens = {s.source: screen_rows(s, grids[s.source]) for s in plans}
    first = measured([r for rows in screens.values() for r in rows], seeds[:1], "screen")
    if first is None:
        return None
    confirms = {s.source: confirm_rows(screens[s.source], [r for r in first if r["teacher"] == s.source])
                for s in plans}
    confirmed = measured([r for rows in confirms.values() for r in rows], seeds, "frontier")
    if confirmed is None:
        return None
    later = {}
    for s in plans:
        inline, exposed = best_defenses(s, [r for r in confirmed if r["teacher"] == s.source])
        later[s.source] = (attacker_rows(s, inline, exposed), curve_rows(s, inline, exposed, budgets))
    if measured([r for rows, _ in later.values() for r in rows], seeds, "attackers and baselines") is None:
        return None
    if measured([r for _, rows in later.values() for r in rows], seeds[:3], "budget curve") is None:
        return None
    return {s.source: list(dict.fromkeys([row_key(row, seeds[0]) for row in screens[s.source]]
                                         + [row_key(row, seed) for row in confirms[s.source] for seed in seeds[1:]]
                                         + [row_key(row, seed) for row in later[s.source][0] for seed in seeds]
                                         + [row_key(row, seed) for row in later[s.source][1] for seed in seeds[:3]]))
            for s in plans}


def budgets_of(plans: list[Search], quick: bool) -> tuple[int, ...]:
    return tuple(sorted({s.attack.steps for s in plans} | {2 * s.attack.steps for s in plans})) if quick else BUDGETS


def run(teachers: list[tuple[str, str]], seeds: list[int], budget: int | None, quick: bool, out: Path,
        workers: Workers, address: str | None) -> None:
    """The search on Ray, resuming from the rows already in `out`; each CSV ends in the protocol's order."""
    store, plans = Store(out), searches(teachers, budget, quick)
    for search in plans:
        store.load(search.task, search.source)
    with ray_session(address, workers.threads) as ray:
        grids = costs(ray, plans, out, workers)
        order = stages(plans, seeds, budgets_of(plans, quick), grids,
                       lambda rows, seeds, stage: run_rows(ray, rows, seeds, store, workers, desc=stage))
    for source, keys in order.items():
        by_key = {r["key"]: r for r in store.rows[source]}
        store.write(source, [by_key[k] for k in keys])


def plan(teachers: list[tuple[str, str]], seeds: list[int], budget: int | None, quick: bool, workers: Workers,
         out: Path, address: str | None) -> str:
    """What a run will cost before it starts, changing no row: per teacher, its rows on file that are
    current (and those the recipe or the teacher's weights made stale); then the first stage with
    rows to train, its students exactly (from the teacher costs, computed and stored in `out` for the
    run), an upper bound on the rest and the estimated time of the students here."""
    store, plans = Store(out), searches(teachers, budget, quick)
    lines = [f"{s.source}: {len(store.rows[s.source])} rows on file are current, {stale} stale"
             for s in plans for stale in [store.load(s.task, s.source, keep_stale=True)]]
    grids = {s.source: costs_on_file(s, out) for s in plans}
    if any(g is None for g in grids.values()):
        with ray_session(address, workers.threads) as ray:
            grids = costs(ray, plans, out, workers)
    missing: list[str] = []

    def on_file(rows: list[Row], seeds: list[int], stage: str) -> list[dict] | None:
        found = {r["key"]: r for row in rows for r in store.rows[row.teacher]}
        keys = [row_key(row, seed) for row in rows for seed in seeds]
        if all(k in found for k in keys):
            return [found[k] for k in keys]
        missing.append(f"{sum(k not in found for k in keys)} student pairs of the {stage} stage")
        return None

    if stages(plans, seeds, budgets_of(plans, quick), grids, on_file) is not None:
        return "\n".join(lines + ["every row of the search is on file and current: no committed row needs retraining"])
    lines.append(f"to train next: {missing[0]} (later stages follow from their results)")
    return "\n".join(lines + estimate(plans, grids, len(seeds), workers))


def estimate(plans: list[Search], grids: dict[str, pd.DataFrame], seeds: int, workers: Workers) -> list[str]:
    """Per teacher, the screen's students (exact) and an upper bound on the rest, with their time here."""
    lines, total_students, total_s = [], 0, 0.0
    for search in plans:
        screen = screen_rows(search, grids[search.source])
        cleans = len({(row.defense.layers, row.attack) for row in screen})  # one clean twin per layer and attacker
        attackers = len(search.attackers())
        confirm = (seeds - 1) * (len(screen) + cleans)  # at most every screened point is on a frontier
        rows = 2 * attackers + 1 + len(BASELINE_DIRECTIONS) + 1  # attackers in-line and exposed, every stage, baselines
        later = (rows + 2 * attackers + 1) * seeds  # + their clean twins (the baselines share the in-line ones)
        n = len(screen) + cleans + confirm + later
        session, pairs = teacher_on(search.task, search.source, search.pairs, workers.device)
        seconds = n * seconds_per_student(session, pairs, search.attack)
        lines.append(f"{search.source}: {len(screen) + cleans} screen students of {search.attack.steps} steps, "
                     f"at most {n} before the budget curve, about {seconds / 60:.1f} min")
        total_students, total_s = total_students + n, total_s + seconds
    lines.append(f"total: at most {total_students} students before the budget curve, about {total_s / 60:.1f} min "
                 f"on {workers.device.type} with {torch.get_num_threads()} thread(s) and one task at a time")
    return lines


def seconds_per_student(session: SessionTeacher, pairs, attack: Attack) -> float:
    """One student's wall time here: the teacher's answers, a short run's steps scaled to the
    budget, and scoring the student (distill reports once the teacher has answered, so one run
    times both parts)."""
    defense, steps = Setting(layers=(session.default_layer,)).clean, min(attack.steps, 20)
    train_student(session.model, session.task, defense, dataclasses.replace(attack, steps=1), seed=0)  # queries made
    marks = [time.perf_counter()]
    for progress in distill(session.model, session.task, [(defense, 0)], dataclasses.replace(attack, steps=steps),
                            every=steps):
        marks.append(time.perf_counter())
    mean_score(progress.students[0], pairs, session.task)
    answers, run, scoring = marks[1] - marks[0], marks[2] - marks[1], time.perf_counter() - marks[2]
    return answers + run * attack.steps / steps + scoring


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--teachers", nargs="*", default=None,
                   help="bundled teachers to sweep (default: every bundled teacher of the tasks)")
    p.add_argument("--seeds", nargs="*", type=int, default=list(range(CONFIRM_SEEDS)),
                   help="the screen trains the first, the frontier and attackers all, the budget curve the first three")
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
    p.add_argument("--per-gpu", type=int, default=Workers.per_gpu,
                   help="Ray tasks that share one GPU with --device cuda (a quick student alone leaves a GPU idle)")
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
    try:
        workers = Workers(args.threads, device, args.per_gpu)
    except ValueError as e:
        p.error(str(e))
    if note:
        print(note, flush=True)
    torch.set_num_threads(args.threads)
    teachers = [(name, source) for name in ([] if args.report_only else args.tasks)
                for source in bundled_for(name) if args.teachers is None or source in args.teachers]
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="asvp-quick-")) if args.quick else RESULTS
    print(f"writing to {args.out}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plan:
        print(plan(teachers, args.seeds, args.budget, args.quick, workers, args.out, args.address))
        return
    if teachers:
        start = time.perf_counter()
        run(teachers, args.seeds, args.budget, args.quick, args.out, workers, args.address)
        print(f"swept {len(teachers)} teacher(s) in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if not any(args.out.glob("sweep_*.csv")):
        p.error(f"no sweep_*.csv in {args.out}: nothing to report")
    write_report(args.out)

