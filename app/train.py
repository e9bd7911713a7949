"""Train a teacher: `python -m app.train --task dehaze` writes models/<task>/ in Hub layout.

Teachers learn from permissively licensed clean images with the task's synthetic degradation,
never from benchmark images. The recipe is recorded in the model card it writes.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.data import TEACHER_IMAGES, PairPool
from app.hub import save_teacher
from app.modelcard import write_card
from app.nets import UNetTeacher, count_params
from app.tasks import get_task

MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass
class Recipe:
    task: str
    steps: int = 4000
    batch: int = 8
    patch: int = 96  # output-side patch size in pixels
    lr: float = 1e-3
    variants: int = 12  # seeded degradations per training image
    seed: int = 0
    width: int = 24


def train(recipe: Recipe, out: Path, log_every: int = 100) -> UNetTeacher:
    """Fit a UNetTeacher with L1 loss, Adam and cosine decay; log and save to `out`."""
    task = get_task(recipe.task)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    pool = PairPool(task, TEACHER_IMAGES, recipe.variants, recipe.seed)
    model = UNetTeacher(width=recipe.width, scale=task.scale)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps, eta_min=recipe.lr / 100)
    out.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("train")
    log.addHandler(logging.FileHandler(out / "train.log", mode="w"))
    log.setLevel(logging.INFO)
    log.info(json.dumps(asdict(recipe)))
    start, running = time.time(), 0.0
    bar = tqdm(range(1, recipe.steps + 1), desc=f"train {task.name}")
    for step in bar:
        x, y = pool.batch(rng, recipe.batch, recipe.patch // task.scale)
        loss = F.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if step % log_every == 0:
            bar.set_postfix(l1=f"{running / log_every:.4f}")
            log.info(f"step {step} l1 {running / log_every:.5f} elapsed {time.time() - start:.0f}s")
            running = 0.0
    model.eval()
    save_teacher(model, out)
    write_card(out, task, recipe=asdict(recipe), params=count_params(model),
               train_minutes=(time.time() - start) / 60)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", required=True)
    for name, default in asdict(Recipe(task="")).items():
        if name != "task":
            p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--threads", type=int, default=2)
    args = vars(p.parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    recipe = Recipe(**args)
    train(recipe, MODELS / recipe.task)


if __name__ == "__main__":
    main()
