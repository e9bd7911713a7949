"""One visitor's teacher: a private copy of a loaded teacher, where it can be hooked, and the
facts the UI shows about it (the search loads its teachers the same way)."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from app.data.tasks import Task, get_task
from app.teachers.layers import FeatureMap, hookable_layers
from app.teachers.loader import LoadedTeacher, TeacherLoadError, load_teacher
from app.teachers.registry import bundled


PROBE_SIDE = 24  # the probe image that finds the hookable layers is about 24 x 40 (never square)


@lru_cache(maxsize=None)
def _bundled(task_name: str) -> LoadedTeacher:
    return load_teacher(task_name)


@dataclass
class SessionTeacher:
    """One visitor's teacher: a private copy (hooks on it never touch another session's) and the
    facts the UI shows about it."""

    task: Task
    source: str
    loaded: LoadedTeacher
    model: nn.Module
    layers: list[FeatureMap]  # where the defense can hook, in forward order
    default_layer: str  # the family's default hook (the end of the network's body)
    early_layer: str  # an early body stage of the family (the sweep's cheap hook point)
    stages: list[str]  # the body's stages, in forward order: every hook point a search tries


def probe(loaded: LoadedTeacher) -> torch.Tensor:
    """A seeded 1 x 3 x H x W image that meets the teacher's size rule as it is (padding would
    hide which maps follow the input) and is not square."""
    m = loaded.size_multiple
    h = -(-max(PROBE_SIDE, loaded.size_minimum) // m) * m
    w = h + -(-16 // m) * m
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def hook_layer(layers: list[FeatureMap], pattern: str) -> str:
    """The last layer whose name matches a family's pattern (its default hook, or its early stage);
    else the last map at the input's resolution with more channels than an image; else the last map."""
    names = [f.name for f in layers if re.fullmatch(pattern, f.name)]
    names = names or [f.name for f in layers if f.scale == 1 and f.channels > 3] or [f.name for f in layers]
    return names[-1]


def session_teacher(task_name: str, source: str = "", device: torch.device = torch.device("cpu")) -> SessionTeacher:
    """Load (bundled teachers once per process) and copy a teacher for one session onto `device`
    (its Distill students train there too); refuse one whose scale does not fit the task, or that
    offers no feature map to hook."""
    task, source = get_task(task_name), (source or "").strip() or task_name
    loaded = _bundled(source) if source in bundled() else load_teacher(source)
    if loaded.scale != task.scale:
        raise TeacherLoadError(f"this teacher upscales x{loaded.scale}, but task {task.name} needs "
                               f"x{task.scale}: pick the matching task")
    model = copy.deepcopy(loaded.model).to(device)
    layers = hookable_layers(model, probe(loaded).to(device))
    if not layers:
        raise TeacherLoadError(f"{loaded.origin} shows no feature map that follows the input's size: nothing to hook")
    return SessionTeacher(task, source, loaded, model, layers, hook_layer(layers, loaded.default_layer),
                          hook_layer(layers, loaded.early_layer),
                          [f.name for f in layers if re.fullmatch(loaded.stages, f.name)] or [f.name for f in layers])
