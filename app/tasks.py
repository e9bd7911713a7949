"""The five restoration tasks as data: one registry, looked up by name."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from app import degrade
from app.asvp import ASVPConfig
from app.distill import Attack


@dataclass(frozen=True)
class DefenseDefaults:
    """Where and how hard ASVP perturbs by default: chosen by `python -m app.experiments`
    (best protection ratio, results/defaults.json); these values stand until a sweep has run."""

    layer: str = "dec1"
    layout: str = "channel"
    k: int = 1
    a: float = 1.5
    tau: float | None = None
    placement: str = "inline"

    @property
    def config(self) -> ASVPConfig:
        return ASVPConfig(k=self.k, a=self.a, layout=self.layout, layers=(self.layer,), tau=self.tau,
                          placement=self.placement)


@dataclass(frozen=True)
class Task:
    """A restoration task: how clean images degrade, how results are scored, where it is tested."""

    name: str
    title: str
    degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    benchmark: str  # folder under the shared benchmarks with input/ and target/
    scale: int = 1  # > 1 for super-resolution: the output is `scale` times larger
    y_channel: bool = False  # SR convention: score the BT.601 Y channel, crop `scale` px borders
    synthetic_eval_from: str | None = None  # no real ground truth: degrade this benchmark's targets
    target_gain: float = 4.0  # dB the teacher should add over the input on its benchmark
    defaults: DefenseDefaults = field(default_factory=DefenseDefaults)
    attack: Attack = Attack()  # the attacker's default student and budget (the app's Distill)
    examples: tuple[str, ...] = ("chelsea", "coffee")

    @property
    def crop_border(self) -> int:
        return self.scale if self.scale > 1 else 0

    def input_baseline(self, degraded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """What the user already has: the degraded image, bicubic-upsampled to `shape` for SR."""
        return degrade.bicubic_resize(degraded, shape[:2]) if self.scale > 1 else degraded

    def make_pair(self, clean: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(degraded, clean) with the clean side cropped so SR sizes match exactly."""
        if self.scale > 1:
            h, w = clean.shape[:2]
            clean = clean[: h - h % self.scale, : w - w % self.scale]
        return self.degrade(clean, np.random.default_rng(seed)), clean


# SR students need plain convs and more steps to get past bicubic-plus-a-linear-filter; an adaptive
# SR attacker keeps the answers sharp (a low-pass would erase what SR adds) and relies on the trim
SR_ATTACK = Attack(steps=400, dilated=False, leak=0.1, lowpass_sigma=0.0)
# rain streaks (up to 40 px long) and water casts need the wider view of a deeper dilated stack (31
# px instead of 17); the derain attacker also fits with L2, since L1 treats the sparse bright streaks
# as outliers and leaves them half-removed. Haze and low light do as well or better with 4 layers
UNDERWATER_ATTACK = Attack(depth=7)
DERAIN_ATTACK = Attack(depth=7, loss="l2")
SWEPT_DEFAULTS = Path(__file__).resolve().parent.parent / "results" / "defaults.json"
_SWEPT = json.loads(SWEPT_DEFAULTS.read_text()) if SWEPT_DEFAULTS.exists() else {}


def _with_swept_defaults(task: Task, swept: dict) -> Task:
    return dataclasses.replace(task, defaults=DefenseDefaults(**swept[task.name])) if task.name in swept else task


TASKS: dict[str, Task] = {
    t.name: _with_swept_defaults(t, _SWEPT)
    for t in (
        Task("sr_x2", "Super-resolution x2", degrade.downscale(2), "sr_x2", scale=2, y_channel=True,
             target_gain=0.8, attack=SR_ATTACK),
        Task("sr_x4", "Super-resolution x4", degrade.downscale(4), "sr_x4", scale=4, y_channel=True,
             target_gain=0.0, attack=SR_ATTACK),
        Task("lowlight", "Low-light enhancement", degrade.low_light, "lowlight_noref",
             synthetic_eval_from="dehaze"),
        Task("underwater", "Underwater enhancement", degrade.underwater, "underwater", attack=UNDERWATER_ATTACK),
        Task("dehaze", "Dehazing", degrade.haze, "dehaze"),
        Task("derain", "Deraining", degrade.rain, "derain", attack=DERAIN_ATTACK),
    )
}


def get_task(name: str) -> Task:
    """Look a task up by name, with a clear error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
