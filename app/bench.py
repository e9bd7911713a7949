"""Speed budgets, measured side by side in one run: `python -m app.bench [--skip-app]`.

Each line prints the figure, the goal and PASS/FAIL; op timings are medians over repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F

from app.asvp import ASVPConfig, amplify, defend, reference_amplify
from app.distill import Attack
from app.hub import load_teacher
from app.images import load_rgb
from app import lab
from app.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def report(name: str, value: float, goal: str, ok: bool, extra: str = "") -> None:
    print(f"{name:<44} {value:>9.3f}  goal {goal:<10} {'PASS' if ok else 'FAIL'}  {extra}", flush=True)


def bench_channel(repeats: int) -> None:
    feat = torch.randn(1, 64, 256, 256, generator=torch.Generator().manual_seed(0))
    cfg = ASVPConfig(k=4, a=3.0)
    fast = median_time(lambda: amplify(feat, cfg), repeats)
    svd = median_time(lambda: torch.linalg.svd(feat.reshape(1, 64, -1), full_matrices=False), repeats)
    err = rel_error(amplify(feat, cfg), reference_amplify(feat, cfg))
    report("channel op speed-up vs torch.linalg.svd (x)", svd / fast, ">= 20", svd / fast >= 20,
           f"({fast * 1e3:.1f} ms vs {svd * 1e3:.1f} ms; C=64, 256x256)")
    report("channel op relative error", err, "<= 1e-4", err <= 1e-4)


def bench_spatial(repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    maps = {"smooth (feature-like)": F.avg_pool2d(torch.randn(1, 64, 72, 72, generator=gen), 9, stride=1),
            "white noise (worst case)": torch.randn(1, 64, 64, 64, generator=gen)}
    cfg = ASVPConfig(k=4, a=3.0, layout="spatial")
    for name, feat in maps.items():
        fast = median_time(lambda: amplify(feat, cfg), repeats)
        svd = median_time(lambda: torch.linalg.svd(feat.reshape(64, 64, 64), full_matrices=False), repeats)
        err = rel_error(amplify(feat, cfg), reference_amplify(feat, cfg))
        report(f"spatial op speed-up, {name} (x)", svd / fast, ">= 5", svd / fast >= 5,
               f"({fast * 1e3:.1f} ms vs {svd * 1e3:.1f} ms; C=64, 64x64)")
        report(f"spatial op relative error, {name}", err, "<= 1e-3", err <= 1e-3)


def bench_forward(task_name: str, repeats: int) -> None:
    task, teacher = get_task(task_name), load_teacher(task_name).model
    d = task.defaults
    cfg = ASVPConfig(k=d.k, a=d.a, layout=d.layout, layers=(d.layer,), tau=d.tau)
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))

    def defended():
        with torch.no_grad(), defend(teacher, cfg):
            teacher(x)

    def clean():
        with torch.no_grad():
            teacher(x)

    t_def, t_clean = median_time(defended, repeats), median_time(clean, repeats)
    report("defended / clean teacher forward, 512x512", t_def / t_clean, "<= 1.15", t_def / t_clean <= 1.15,
           f"({t_def * 1e3:.0f} ms vs {t_clean * 1e3:.0f} ms; {task_name}, {d.layout} @ {d.layer}, k={d.k})")


def bench_distill(task_name: str, repeats: int) -> None:
    task, teacher = get_task(task_name), load_teacher(task_name).model
    d = task.defaults
    cfg = ASVPConfig(k=d.k, a=d.a, layout=d.layout, layers=(d.layer,), tau=d.tau)
    scene = lab.make_scene(task, load_rgb(ROOT / "assets" / "coffee.png"), False, 0)
    walls, gaps = [], []
    for seed in range(repeats):
        start = last = time.perf_counter()
        for _ in lab.duel(teacher, scene, cfg, Attack(), seed):
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    report("Distill click, two students (s)", wall, "<= 20", wall <= 20, f"(median of {repeats}; {task_name})")
    report("longest gap between progress updates (s)", max(gaps), "<= 2", max(gaps) <= 2)


def bench_cold_start(port: int = 7899, limit: float = 60.0) -> None:
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < limit:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report("cold start of python app.py to HTTP 200 (s)", wall, "<= 10", wall <= 10)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="dehaze")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--skip-app", action="store_true", help="skip the Distill and cold-start timings")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_channel(args.repeats)
    bench_spatial(args.repeats)
    bench_forward(args.task, args.repeats)
    if not args.skip_app:
        bench_distill(args.task, 3)
        bench_cold_start()


if __name__ == "__main__":
    main()
