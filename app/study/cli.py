"""The definitive search: `python -m app.experiments [--tasks ...] [--teachers ...] [--seeds ...] [--quick]`.

The stages are in app.study.stages, run by app.study.runner; app.study.protocol holds the protocol of
one row. RESULTS.md, figures and defaults.json are rebuilt from the CSV files. A `--quick` run (one
stage, a corner of the grid, three attackers) writes to a fresh temporary folder (or its `--out`),
never to results/: only a full run may replace the stored search.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from app.data.tasks import TASKS
from app.devices import CHOICES, pick_device
from app.study.engine import Workers
from app.study.grid import CONFIRM_SEEDS
from app.study.report import write_report
from app.study.runner import plan, run
from app.teachers.registry import bundled_for


RESULTS = Path(__file__).resolve().parents[2] / "results"


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
