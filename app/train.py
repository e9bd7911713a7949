"""Train a teacher: `python -m app.train --task dehaze [--arch nafnet]`.

`--arch unet` (the default) writes models/<task>/ in our config.json layout; a field architecture
(app.arches: compact, swinir, nafnet, retinexformer) writes models/<task>-<arch>/ as a bare
safetensors checkpoint, loaded back by spandrel's detection like any checkpoint from the Hub.
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

from safetensors.torch import save_file

from app.arches import ARCHES, build
from app.data import TEACHER_IMAGES, PairPool
from app.hub import save_teacher
from app.modelcard import write_card
from app.nets import UNetTeacher, count_params
from app.tasks import get_task

MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass
class Recipe:
    task: str
    arch: str = "unet"
    steps: int = 4000
    batch: int = 8
    patch: int = 96  # output-side patch size in pixels
    lr: float = 1e-3
    variants: int = 12  # seeded degradations per training image
    seed: int = 0
    width: int = 24  # the U-Net's; field architectures use their preset sizes

    @property
    def folder(self) -> str:
        return self.task if self.arch == "unet" else f"{self.task}-{self.arch}"


def train(recipe: Recipe, out: Path, log_every: int = 100) -> torch.nn.Module:
    """Fit a teacher with L1 loss, Adam and cosine decay; log and save to `out`."""
    task = get_task(recipe.task)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    pool = PairPool(task, TEACHER_IMAGES, recipe.variants, recipe.seed)
    model = (UNetTeacher(width=recipe.width, scale=task.scale) if recipe.arch == "unet"
             else build(recipe.arch, task.scale))
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
    if recipe.arch == "unet":
        save_teacher(model, out)
    else:  # a bare checkpoint, as the field publishes them
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    write_card(out, task, ARCHES[recipe.arch].family, type(model).__name__, recipe=asdict(recipe),
               params=count_params(model), train_minutes=(time.time() - start) / 60)
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
    if recipe.arch not in ARCHES:
        p.error(f"unknown --arch {recipe.arch!r}; choose one of {', '.join(ARCHES)}")
    train(recipe, MODELS / recipe.folder)


if __name__ == "__main__":
    main()
