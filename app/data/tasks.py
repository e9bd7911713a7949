"""The restoration tasks as data: one registry, looked up by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from app.data import degrade
from app.data.realworld import SecondOrder


@dataclass(frozen=True)
class Task:
    """A restoration task: how clean images degrade, how results are scored, where it is tested.
    Pure data: the attacker a task expects lives in app.attack.attackers, its defense defaults in
    app.lab.presets."""

    name: str
    title: str
    degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    benchmark: str  # folder under the shared benchmarks with input/ and target/
    scale: int = 1  # > 1 for super-resolution: the output is `scale` times larger
    y_channel: bool = False  # SR convention: score the BT.601 Y channel, crop `scale` px borders
    synthetic_eval_from: str | None = None  # no real ground truth: degrade this benchmark's targets
    target_gain: float = 4.0  # dB the teacher should add over the input on its benchmark
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


TASKS: dict[str, Task] = {
    t.name: t for t in (
        Task("sr_x2", "Super-resolution x2", degrade.downscale(2), "sr_x2", scale=2, y_channel=True,
             target_gain=0.8),
        Task("sr_x4", "Super-resolution x4", degrade.downscale(4), "sr_x4", scale=4, y_channel=True,
             target_gain=0.0),
        Task("sr_real_x4", "Real-world SR x4", SecondOrder(scale=4), "sr_x4", scale=4, y_channel=True,
             synthetic_eval_from="sr_x4", target_gain=0.0),
        Task("lowlight", "Low-light enhancement", degrade.low_light, "lowlight_noref",
             synthetic_eval_from="dehaze"),
        Task("underwater", "Underwater enhancement", degrade.underwater, "underwater"),
        Task("dehaze", "Dehazing", degrade.haze, "dehaze"),
        Task("derain", "Deraining", degrade.rain, "derain"),
    )
}


def get_task(name: str) -> Task:
    """Look a task up by name, with a clear error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None
