"""Where the app starts, per task and teacher family: a defense setting and its attacker.

The defense defaults are chosen by the last full search (`python -m app.experiments` writes
results/defaults.json, one entry per bundled teacher: `dehaze` for our U-Net, `dehaze-nafnet` for
the NAFNet), two per teacher (PICKS: the strongest setting at a negligible teacher cost, and the
strongest overall, each with the attacker it was measured against), and read here explicitly, when
asked; a teacher of the same family from elsewhere starts from its bundled twin's entry. Without
that file, or without an entry, the built-in setting stands and `Preset.source` says so. Nothing
is read at import time, so loading a teacher never depends on a results file.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from app.attack.attackers import attack_for, attacker, own_attacker
from app.attack.distill import Attack
from app.defense.setting import Setting
from app.study.findings import left_words
from app.teachers.architectures import ARCHES
from app.teachers.families import OWN, Family
from app.teachers.registry import folder_name


SWEPT_DEFAULTS = Path(__file__).resolve().parents[2] / "results" / "defaults.json"
BUILT_IN = Setting(layers=("dec1",))  # where a teacher the search has not covered starts (our U-Net's last stage)
PICKS = {"negligible": "the strongest at a negligible teacher cost", "strongest": "the strongest overall"}


@dataclass(frozen=True)
class Preset:
    defense: Setting
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


def swept_name(task_name: str, family: Family) -> str:
    """The bundled teacher whose sweep entry a family starts from (a family the lab trains no
    teacher of gets a name no sweep writes)."""
    arch = next((name for name, a in ARCHES.items() if a.family == family), None)
    return folder_name(task_name, arch) if arch else f"{task_name}, {family.title}"


def preset(task_name: str, family: Family = OWN, pick: str = "negligible", path: Path = SWEPT_DEFAULTS) -> Preset:
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
    return Preset(BUILT_IN, attack_for(task_name), own_attacker(task_name),
                  f"built-in: {problem or f'{path.name} has no entry for {name}'}")


def noise_floor(task_name: str, family: Family = OWN, path: Path = SWEPT_DEFAULTS) -> float | None:
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
        return Preset(Setting.from_entry(entry["defense"]), attack, entry["attacker"], f"from {where}")
    measured = (f"student {entry['student_dpsnr']:+.2f} ± {entry['student_dpsnr_std']:.2f} dB (noise floor "
                f"{entry['noise_floor']:.2f}) under "
                f"{entry['attacker']}, teacher {entry['teacher_dpsnr']:+.2f} dB / SSIM {entry['teacher_dssim']:+.4f}, "
                f"{entry['seeds']} seeds{left_words(entry)}")
    return Preset(Setting.from_entry(entry["defense"]), attack, entry["attacker"], f"swept ({where}: {measured})")
