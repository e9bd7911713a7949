"""Where the app and the sweep start, per task: the defense setting and the attacker's student.

The defense defaults are chosen by the last full search (`python -m app.experiments` writes
results/defaults.json, one entry per bundled teacher: `dehaze` for our U-Net, `dehaze-nafnet` for
the NAFNet), two per teacher (PICKS: the strongest setting at a negligible teacher cost, and the
strongest overall, each with the attacker it was measured against), and read here explicitly, when
asked; a teacher of the same family from elsewhere starts from its bundled twin's entry. Without
that file, or without an entry, the built-in setting stands and `Preset.source` says so. Nothing
is read at import time, so loading a teacher never depends on a results file.

The attackers the search measures and the app offers are named here (ATTACKERS): each name is the
`Attack.label` of the task's own attacker changed as it says.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from app.arches import ARCHES
from app.asvp import ASVPConfig
from app.distill import Attack
from app.families import OWN

SWEPT_DEFAULTS = Path(__file__).resolve().parent.parent / "results" / "defaults.json"


@dataclass(frozen=True)
class DefenseDefaults:
    """One task's default defense: where and how hard ASVP perturbs."""

    layer: str = "dec1"
    layout: str = "channel"
    k: int = 1
    a: float = 1.5
    tau: float | None = None
    placement: str = "inline"

    @classmethod
    def of(cls, config: ASVPConfig) -> DefenseDefaults:
        """A one-layer setting's fields (what defaults.json, a shared link and the controls hold)."""
        return cls(config.layers[0], config.layout, config.k, config.a, config.tau, config.placement)

    @property
    def config(self) -> ASVPConfig:
        return ASVPConfig(k=self.k, a=self.a, layout=self.layout, layers=(self.layer,), tau=self.tau,
                          placement=self.placement)


# SR students need plain convs and more steps to get past bicubic-plus-a-linear-filter; an adaptive
# SR attacker keeps the answers sharp (a low-pass would erase what SR adds) and relies on the trim
SR_ATTACK = Attack(steps=400, dilated=False, leak=0.1, lowpass_sigma=0.0)
# rain streaks (up to 40 px long) and water casts need the wider view of a deeper dilated stack (31
# px instead of 17); the derain attacker also fits with L2, since L1 treats the sparse bright streaks
# as outliers and leaves them half-removed. Haze and low light do as well or better with 4 layers
ATTACKS = {"sr_x2": SR_ATTACK, "sr_x4": SR_ATTACK, "underwater": Attack(depth=7),
           "derain": Attack(depth=7, loss="l2")}


def attack_for(task_name: str) -> Attack:
    """The attacker a task expects (the app's Distill and the sweep's students)."""
    return ATTACKS.get(task_name, Attack())


# changes to a task's own attacker, by the name each one's label takes
ATTACKERS = {
    "output L1": dict(kind="output", loss="l1"),
    "output L2": dict(kind="output", loss="l2"),
    **{f"feature {loss.upper()} x{w:g}": dict(kind="feature", feature_loss=loss, feature_weight=w)
       for loss in ("l1", "mse") for w in (0.1, 1.0, 10.0)},
    "feature L1 x1, normalised": dict(kind="feature", feature_weight=1.0, normalise=True),
    "FitNet MSE": dict(kind="fitnet", feature_loss="mse"),
    "adaptive": dict(kind="adaptive"),
}


def attacker(base: Attack, name: str) -> Attack:
    """A named attacker built on a task's own (its student, budget and queries stay)."""
    if name not in ATTACKERS:
        raise ValueError(f"unknown attacker {name!r}; choose one of {', '.join(ATTACKERS)}")
    return dataclasses.replace(base, **ATTACKERS[name])


def own_attacker(task_name: str) -> str:
    """The name of the task's own attacker (output KD with the task's loss)."""
    return attack_for(task_name).label


PICKS = {"negligible": "the strongest at a negligible teacher cost", "strongest": "the strongest overall"}


@dataclass(frozen=True)
class Preset:
    defense: DefenseDefaults
    attack: Attack
    attacker: str  # the named attacker it was measured against (the task's own for the built-in setting)
    source: str  # where the defense setting comes from, in words


def read_swept(path: Path = SWEPT_DEFAULTS) -> tuple[dict, str]:
    """The swept defaults file as {task: fields}, and a note when it is absent or unreadable."""
    if not path.is_file():
        return {}, f"no {path.name} yet (run `python -m app.experiments`)"
    try:
        swept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, f"{path.name} is unreadable ({type(e).__name__})"
    return (swept, "") if isinstance(swept, dict) else ({}, f"{path.name} does not hold an object")


def swept_name(task_name: str, family: str) -> str:
    """The bundled teacher whose sweep entry a family starts from: `<task>` or `<task>-<arch>` (a
    family with no bundled teacher gets a name no sweep writes)."""
    arch = next((name for name, a in ARCHES.items() if a.family.title == family), None)
    return task_name if arch == "unet" else f"{task_name}-{arch}" if arch else f"{task_name}, {family}"


def preset(task_name: str, family: str = OWN.title, pick: str = "negligible", path: Path = SWEPT_DEFAULTS) -> Preset:
    """A task's defense defaults for a teacher family (one of the search's PICKS, or built-in with
    the reason) and its attacker. A family the search has not covered starts from the built-in
    setting (the UI then hooks the family's default layer)."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; choose one of {', '.join(PICKS)}")
    name = swept_name(task_name, family)
    swept, problem = read_swept(path)
    entry = swept.get(name)
    if isinstance(entry, dict):
        try:
            return measured_preset(task_name, entry[pick], f"{path.name}, {name}, {PICKS[pick]}")
        except (KeyError, TypeError, ValueError) as e:
            problem = f"{path.name} has no usable {pick!r} entry for {name} ({type(e).__name__}: {e})"
    return Preset(DefenseDefaults(), attack_for(task_name), own_attacker(task_name),
                  f"built-in: {problem or f'{path.name} has no entry for {name}'}")


def noise_floor(task_name: str, family: str = OWN.title, path: Path = SWEPT_DEFAULTS) -> float | None:
    """The search's noise floor for a task's teacher family (the spread of clean-taught students
    across seeds, in dB), or None where the search has not measured it."""
    entry = read_swept(path)[0].get(swept_name(task_name, family))
    floor = entry.get("noise_floor") if isinstance(entry, dict) else None
    return float(floor) if isinstance(floor, (int, float)) and floor >= 0 else None


def measured_preset(task_name: str, entry: dict, where: str) -> Preset:
    """A setting to start from: a defaults.json pick or a line of the search's summary (its defense,
    attacker and what the search measured, in words), or a shared link's (its defense, attacker and
    student budget)."""
    attack = attacker(attack_for(task_name), entry["attacker"])
    if "budget" in entry:
        attack = dataclasses.replace(attack, steps=int(entry["budget"]))
    if "student_dpsnr" not in entry:
        return Preset(DefenseDefaults(**entry["defense"]), attack, entry["attacker"], f"from {where}")
    measured = (f"student {entry['student_dpsnr']:+.2f} ± {entry['student_dpsnr_std']:.2f} dB (noise floor "
                f"{entry['noise_floor']:.2f}) under "
                f"{entry['attacker']}, teacher {entry['teacher_dpsnr']:+.2f} dB / SSIM {entry['teacher_dssim']:+.4f}, "
                f"{entry['seeds']} seeds")
    return Preset(DefenseDefaults(**entry["defense"]), attack, entry["attacker"], f"swept ({where}: {measured})")
