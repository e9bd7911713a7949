"""The search run and planned: teacher costs (Ray tasks, stored in costs_<teacher>.csv), the no-theft
students (app.study.notheft), then the stages (app.study.stages) with rows run as Ray tasks (embedded on
this machine, or on a cluster) that stream into sweep_<teacher>.csv as they finish, a rerun training only the rows missing there
(app.study.engine), and last the attackers who know the defense and the field students at the settings the
stages found (app.study.informed, app.study.field); or, for a plan, the same walk over the rows on file, changing
none.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from app.attack.distill import FIELD_STEPS
from app.study import field, informed, notheft
from app.study.engine import Store, Workers, ray_session, row_key, run_rows, stamp, streamed
from app.study.grid import grid, teacher_costs
from app.study.protocol import Pairs, Row, seconds_per_student, teacher_on
from app.study.stages import BASELINE_DIRECTIONS, Search, budgets_of, screen_rows, searches, stages
from app.teachers.registry import file_stem
from app.teachers.sessions import Source


def costs_path(search: Search, out: Path) -> Path:
    return out / f"costs_{file_stem(search.source)}.csv"


def costs_on_file(search: Search, out: Path) -> pd.DataFrame | None:
    """costs_<teacher>.csv, while its grid, teacher and recipe are the current ones."""
    path = costs_path(search, out)
    if not path.exists():
        return None
    on_file = pd.read_csv(path)
    fresh = len(on_file) == len(grid(search.stages, search.quick)) and all(
        (on_file[k] == v).all() for k, v in stamp(search.task, search.source).items())
    return on_file if fresh else None


def cost_grid(search: Search, device: torch.device) -> pd.DataFrame:
    """The teacher cost of every in-line grid setting (teacher passes only: one Ray task per teacher)."""
    session, pairs, _ = teacher_on(search.task, search.source, search.pairs, device)
    return teacher_costs(session.model, session.task, grid(search.stages, search.quick), pairs)


def costs(ray, plans: list[Search], out: Path, workers: Workers) -> dict[str, pd.DataFrame]:
    """Every teacher's cost grid: read back from its costs_<teacher>.csv, or computed in parallel
    and stored there (a plan's costs serve the run that follows)."""
    found = {s.source: costs_on_file(s, out) for s in plans}
    task = workers.remote(ray, cost_grid)
    pending = {task.remote(s): s for s in plans if found[s.source] is None}
    for search, grid_costs in streamed(ray, pending, "teacher costs", "teacher"):
        found[search.source] = grid_costs.assign(**stamp(search.task, search.source))
        found[search.source].to_csv(costs_path(search, out), index=False)
    return found


def stores(out: Path) -> tuple[Store, Store, Store, Store]:
    """The search's row files in `out`: the stages', the no-theft students', the informed attackers' and the field
    students'."""
    return Store(out), Store(out, notheft.KIND), informed.store(out), field.store(out)


def stale_lines(files: tuple[Store, ...], task: str, source: Source) -> tuple[int, list[str]]:
    """Load a teacher's rows into each of `files`, keeping the stale ones on file (a run would drop them, and on
    another kind of CPU they may only need --crosscheck): how many are stale, and a line per file that has some."""
    total, lines = 0, []
    for store in files:
        if stale := store.load(task, source, keep_stale=True):
            here = store.stamp(task, source)
            total += stale
            lines.append(f"{store.path(source).name}: {stale} rows of another recipe or teacher than here "
                         f"(recipe {here['recipe']}, teacher {here['teacher_sha']})")
    return total, lines


def stale_on_file(teachers: list[tuple[str, Source]], out: Path) -> list[str]:
    """A line per row file in `out` with rows that look stale here (another recipe or teacher weights), changing
    none."""
    files = stores(out)
    return [line for task, source in teachers for line in stale_lines(files, task, source)[1]]


def run(teachers: list[tuple[str, Source]], seeds: list[int], budget: int | None, quick: bool, out: Path,
        workers: Workers, address: str | None, pairs: Pairs | None = None) -> None:
    """The search on Ray, resuming from the rows already in `out` (stale ones leave their file: `stale_on_file`
    says which first); each CSV ends in the protocol's order."""
    plans, (store, free, aware, long) = searches(teachers, budget, quick, pairs), stores(out)
    for search in plans:
        for each in (store, free, aware, long):
            each.load(search.task, search.source)
    with ray_session(address, workers.threads) as ray:
        grids = costs(ray, plans, out, workers)
        notheft.run_no_theft(ray, plans, seeds, free, workers)  # cheap, and what every finding is weighed against
        order = stages(plans, seeds, budgets_of(plans, quick), grids,
                       lambda rows, seeds, stage: run_rows(ray, rows, seeds, store, workers, desc=stage))
        for source, keys in order.items():
            by_key = {r["key"]: r for r in store.rows[source]}
            store.write(source, [by_key[k] for k in keys])
        if not quick:  # they read the search's confirmed settings: a quick search confirms none
            after_search(ray, plans, seeds, store, aware, long, workers)


def after_search(ray, plans: list[Search], seeds: list[int], store: Store, aware: Store, long: Store,
                 workers: Workers, steps: int = FIELD_STEPS) -> None:
    """The stages that read the finished search's rows, in the order the answer table needs them: the informed
    attackers at its picks, the field students, the quick students at the field's budget (the budget curve
    extended: hours), then the informed attackers elsewhere (a day of two cores: each rerun trains only what is
    missing)."""
    (picks, elsewhere), (fields, quicks) = informed.wanted(plans, store), field.wanted(plans, store, steps)
    for rows, stage, count in ((picks, aware, informed.SEEDS), (fields, long, field.SEEDS),
                               (quicks, long, field.SEEDS), (elsewhere, aware, informed.SEEDS)):
        run_rows(ray, rows, seeds[:count], stage, workers, desc=stage.kind)


def plan(teachers: list[tuple[str, Source]], seeds: list[int], budget: int | None, quick: bool, workers: Workers,
         out: Path, address: str | None, pairs: Pairs | None = None) -> str:
    """What a run will cost before it starts, changing no row: per teacher, its rows on file that are
    current (and those the recipe or the teacher's weights made stale); then the first stage with
    rows to train, its students exactly (from the teacher costs, computed and stored in `out` for the
    run), an upper bound on the rest and the estimated time of the students here."""
    plans, files = searches(teachers, budget, quick, pairs), stores(out)
    store, free, aware, long = files
    lines, which = [], []  # which files hold stale rows, so that a new kind of CPU is crosschecked first
    for s in plans:  # every file of the teacher: a run drops the stale rows of each
        stale, named = stale_lines(files, s.task, s.source)
        lines.append(f"{s.source}: {sum(len(each.rows[s.source]) for each in files)} rows on file are current, "
                     f"{stale} stale")
        which += named
    lines += which
    if unfree := notheft.missing(plans, seeds, free):
        lines.append(f"to train first: {unfree} no-theft students (the task's own attacker, no teacher)")
    grids = {s.source: costs_on_file(s, out) for s in plans}
    if any(g is None for g in grids.values()):
        with ray_session(address, workers.threads) as ray:
            grids = costs(ray, plans, out, workers)
    missing: list[str] = []
    asked: set[str] = set()

    def on_file(rows: list[Row], seeds: list[int], stage: str) -> list[dict] | None:
        found = {r["key"]: r for row in rows for r in store.rows[row.teacher]}
        keys = [row_key(row, seed) for row in rows for seed in seeds]
        asked.update(keys)
        if all(k in found for k in keys):
            return [found[k] for k in keys]
        missing.append(f"{sum(k not in found for k in keys)} student pairs of the {stage} stage")
        return None

    done = stages(plans, seeds, budgets_of(plans, quick), grids, on_file) is not None
    unasked = sum(r["key"] not in asked for s in plans for r in store.rows[s.source])
    lines.append(f"{unasked} current rows on file that no stage reached so far asks for")  # a changed row key
    at_picks, elsewhere = informed.missing(plans, seeds, store, aware) if done and not quick else ("", "")
    if at_picks:
        lines.append(f"to train then: {at_picks} (attackers who know the defense, at the answer table's picks)")
    unfielded = field.missing(plans, seeds, store, long) if done and not quick else ""
    if unfielded:
        lines.append(f"to train then: {unfielded}")
    if elsewhere:
        lines.append(f"to train last: {elsewhere} (at the other settings they measure)")
    if done:  # what is left (no-theft, informed or field students) is counted above
        left = unfree or at_picks or elsewhere or unfielded
        return "\n".join(lines + ([] if left else
                                  ["every row of the search is on file and current: no committed row needs retraining"]))
    lines.append(f"to train next: {missing[0]} (later stages follow from their results)")
    return "\n".join(lines + estimate(plans, grids, len(seeds), workers))


def estimate(plans: list[Search], grids: dict[str, pd.DataFrame], seeds: int, workers: Workers) -> list[str]:
    """Per teacher, the screen's students (exact) and an upper bound on the rest, with their time here: each
    student's steps, and a teacher pass per setting and seed (rows of one setting share it)."""
    lines, total_students, total_s = [], 0, 0.0
    for search in plans:
        screen = screen_rows(search, grids[search.source])
        cleans = len({(row.defense.layers, row.attack) for row in screen})  # one clean twin per layer and attacker
        attackers = len(search.attackers())
        confirm = (seeds - 1) * (len(screen) + cleans)  # at most every screened point is on a frontier
        rows = 2 * attackers + 1 + len(BASELINE_DIRECTIONS) + 1  # attackers in-line and exposed, every stage, baselines
        later = (rows + 2 * attackers + 1) * seeds  # + their clean twins (the baselines share the in-line ones)
        n = len(screen) + cleans + confirm + later
        screened = len({row.defense for row in screen}) + len({row.defense.layers for row in screen})
        # in-line, exposed and every stage exposed, the baselines (output noise among them) and three layers' twins:
        passes = screened * seeds + (3 + len(BASELINE_DIRECTIONS) + 1 + 3) * seeds
        session, pairs, _ = teacher_on(search.task, search.source, search.pairs, workers.device)
        answers_s, student_s = seconds_per_student(session, pairs, search.attack)
        seconds = n * student_s + passes * answers_s
        lines.append(f"{search.source}: {len(screen) + cleans} screen students of {search.attack.steps} steps, "
                     f"at most {n} before the budget curve and {passes} teacher passes, about {seconds / 60:.1f} min")
        total_students, total_s = total_students + n, total_s + seconds
    lines.append(f"total: at most {total_students} students before the budget curve, about {total_s / 60:.1f} min "
                 f"on {workers.device.type} with {torch.get_num_threads()} thread(s) and one task at a time")
    return lines
