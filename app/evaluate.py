"""Score every bundled teacher on its benchmark: `python -m app.evaluate [--write-cards]`.

Prints, per task, PSNR/SSIM of the degraded input (bicubic upsampling for SR) and of the teacher,
writes results/teachers.md, and with --write-cards puts the same figures in each model card.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from app.testsets import benchmark_pairs
from app.hub import bundled_teachers, load_teacher
from app.metrics import score
from app.modelcard import write_quality
from app.nets import restore
from app.tasks import TASKS

RESULTS = Path(__file__).resolve().parent.parent / "results"
COMMAND = "python -m app.evaluate --write-cards"


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


def describe(task) -> str:
    data = f"synthetic pairs from {task.synthetic_eval_from} targets" if task.synthetic_eval_from else task.benchmark
    conv = f"Y channel, {task.crop_border}px border crop" if task.y_channel else "RGB"
    return f"{data} ({conv})"


def table(results: dict) -> str:
    lines = ["| task | benchmark | pairs | input PSNR / SSIM | teacher PSNR / SSIM | gain (dB) ± std over pairs "
             "| target |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        target = TASKS[name].target_gain
        verdict = "met" if r["gain"] >= target else f"missed by {target - r['gain']:.2f} dB"
        lines.append(f"| {name} | {describe(TASKS[name])} | {r['pairs']} | {r['input_psnr']:.2f} / {r['input_ssim']:.4f} "
                     f"| {r['teacher_psnr']:.2f} / {r['teacher_ssim']:.4f} | {r['gain']:+.2f} ± {r['gain_std']:.2f} "
                     f"| >= {target:+.1f} dB: {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--limit", type=int, default=None, help="pairs per task (default: all)")
    p.add_argument("--write-cards", action="store_true")
    args = p.parse_args(argv)
    folders = bundled_teachers()
    results = {}
    for name in args.tasks:
        results[name] = evaluate_task(TASKS[name], load_teacher(name).model, args.limit)
        print(table({name: results[name]}).splitlines()[-1], flush=True)
    text = table(results)
    print("\n" + text)
    if args.write_cards and args.limit is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "teachers.md").write_text(f"# Bundled teachers on the dev benchmarks\n\nMeasured by `{COMMAND}` "
                                             "(deterministic: fixed weights, fixed pairs).\n\n" + text + "\n")
        for name, r in results.items():
            write_quality(folders[name], f"Measured by `{COMMAND}` on {describe(TASKS[name])}, {r['pairs']} pairs:\n\n"
                          + table({name: r}))


if __name__ == "__main__":
    main()
