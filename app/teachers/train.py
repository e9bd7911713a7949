"""Train a teacher: `python -m app.train --task dehaze [--arch nafnet]`.

`--arch unet` (the default) writes models/<task>/ in our config.json layout; a field architecture
(app.teachers.architectures: compact, swinir, nafnet, retinexformer) writes models/<task>-<arch>/ as a bare
safetensors checkpoint, loaded back by spandrel's detection like any checkpoint from the Hub.
Long runs resume: every `--save-every` steps the run state goes to <folder>/resume.pt, and the
same command started again continues from there (a different recipe starts afresh).
Teachers learn from permissively licensed clean images with the task's synthetic degradation,
never from benchmark images. The recipe is recorded in the model card it writes.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from app.data.sources import TEACHER_IMAGES, PairPool
from app.data.tasks import get_task
from app.devices import CHOICES, pick_device
from app.teachers.architectures import ARCHES, build
from app.teachers.loader import save_teacher
from app.teachers.modelcard import write_card
from app.teachers.networks import UNetTeacher, count_params
from app.teachers.registry import MODELS, folder_name


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
        return folder_name(self.task, self.arch)


RESUME = "resume.pt"


def _save_state(path: Path, recipe: Recipe, step: int, seconds: float, model, opt, sched, rng) -> None:
    """The whole run state, written beside and then renamed, so a kill never leaves half a file."""
    state = {"recipe": asdict(recipe), "step": step, "seconds": seconds, "model": model.state_dict(),
             "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng.bit_generator.state,
             "torch_rng": torch.get_rng_state()}
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def _resume_state(path: Path, recipe: Recipe) -> dict | None:
    """A saved state of this very recipe, or None. Our own file, read without unpickling code."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True, map_location="cpu")
    return state if state["recipe"] == asdict(recipe) else None


@contextmanager
def _log_to(path: Path, append: bool):
    """A logger writing to `path` for one run only, so two runs in one process never mix logs."""
    handler, log = logging.FileHandler(path, mode="a" if append else "w"), logging.getLogger("train")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()


def train(recipe: Recipe, out: Path, log_every: int = 100, save_every: int = 200,
          device: torch.device = torch.device("cpu")) -> torch.nn.Module:
    """Fit a teacher with L1 loss, Adam and cosine decay; log, save to `out`, resume if interrupted."""
    task = get_task(recipe.task)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    pool = PairPool(task, TEACHER_IMAGES, recipe.variants, recipe.seed)
    model = (UNetTeacher(width=recipe.width, scale=task.scale) if recipe.arch == "unet"
             else build(recipe.arch, task.scale)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps, eta_min=recipe.lr / 100)
    out.mkdir(parents=True, exist_ok=True)
    state = _resume_state(out / RESUME, recipe)
    first, earlier = 1, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        first, earlier = state["step"] + 1, state["seconds"]
    with _log_to(out / "train.log", append=state is not None) as log:
        log.info(json.dumps(asdict(recipe)) if state is None else f"resumed after step {first - 1}")
        start, running = time.time() - earlier, 0.0
        bar = tqdm(range(first, recipe.steps + 1), desc=f"train {task.name}", initial=first - 1, total=recipe.steps)
        for step in bar:
            x, y = (t.to(device) for t in pool.batch(rng, recipe.batch, recipe.patch // task.scale))
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
            if step % save_every == 0 and step < recipe.steps:
                _save_state(out / RESUME, recipe, step, time.time() - start, model, opt, sched, rng)
    model = model.cpu().eval()  # the bundled teachers serve on the CPU
    if recipe.arch == "unet":
        save_teacher(model, out)
    else:  # a bare checkpoint, as the field publishes them
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    write_card(out, task, ARCHES[recipe.arch].family, type(model).__name__, recipe=asdict(recipe),
               params=count_params(model), train_minutes=(time.time() - start) / 60)
    (out / RESUME).unlink(missing_ok=True)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", required=True)
    for name, default in asdict(Recipe(task="")).items():
        if name != "task":
            p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=200, help="steps between resumable saves")
    p.add_argument("--device", choices=CHOICES, default="auto", help="where to train (auto: CUDA if present)")
    args = vars(p.parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    save_every = args.pop("save_every")
    device, note = pick_device(args.pop("device"))
    if note:
        print(note, flush=True)
    recipe = Recipe(**args)
    if recipe.arch not in ARCHES:
        p.error(f"unknown --arch {recipe.arch!r}; choose one of {', '.join(ARCHES)}")
    train(recipe, MODELS / recipe.folder, save_every=save_every, device=device)

