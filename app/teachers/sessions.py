"""One visitor's teacher: a loaded teacher shared read-only by every session that asks for it, where
it can be hooked, and the facts the UI shows about it (the search loads its teachers the same way).

Sessions share the module, so a server holds one copy of each teacher's weights however many
visitors load it; the defense's hooks are a session's own and come and go inside the teacher's turn
(app.lab.looks.teacher_turn), so no session's hook reaches another's forward."""
from __future__ import annotations

import math
import os
import re
import weakref
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from app.data.images import MAX_SIDE
from app.data.tasks import Task, get_task
from app.teachers.budget import APP_BUDGET, Budget, measure
from app.teachers.layers import FeatureMap, hidden_multiple, hookable_layers
from app.teachers.loader import LoadedTeacher, TeacherLoadError, load_teacher
from app.teachers.registry import bundled


PROBE_SIDE = 24  # the probe image that finds the hookable layers is about 24 x 40 (never square)
SHARED = 16  # bundled and searched teachers kept loaded for whoever asks again (the bundled ones fit)


Source = str | os.PathLike  # a bundled name or Hub id (what a visitor may type), or a local file code names


@dataclass(eq=False)
class Shared:
    """A loaded teacher and its hookable layers, as every session of its source holds them."""

    loaded: LoadedTeacher
    layers: list[FeatureMap]  # where the defense can hook, in forward order


def shared_teacher(source: Source, device: torch.device, budget: Budget | None) -> Shared:
    """A teacher loaded once per source and device, with its hookable layers; one not bundled is
    measured against the cost `budget` first (the bundled ones fit it: tested), and refused over it.
    `budget` None: the caller has admitted the teacher under a budget of its own (the search's command line).
    The bundled teachers and the search's stay loaded (a few, small); one a visitor brought stays only
    while a session holds it, so it is freed when the last such session ends (Gradio deletes a closed
    session's state) or loads another teacher."""
    if budget is None or source in bundled():
        return _kept(source, device)
    key = (source, device, budget)
    if (found := _visiting.get(key)) is None:
        found = _visiting[key] = _shared(source, device, budget)
    return found


_visiting: weakref.WeakValueDictionary[tuple, Shared] = weakref.WeakValueDictionary()


@lru_cache(maxsize=SHARED)
def _kept(source: Source, device: torch.device) -> Shared:
    return _shared(source, device, None)


def _shared(source: Source, device: torch.device, budget: Budget | None) -> Shared:
    loaded = load_teacher(source)
    if budget is not None and source not in bundled():
        loaded.cost = measure(loaded.model, loaded.scale, budget)
        if why := loaded.cost.refusal(budget):
            raise TeacherLoadError(f"{loaded.origin} is over the lab's cost budget: {why}")
    loaded.model.to(device)
    return Shared(loaded, body_layers(loaded, device))


@dataclass
class SessionTeacher:
    """One visitor's teacher (its module shared with every session of the same source) and the facts
    the UI shows about it."""

    task: Task
    source: Source
    shared: Shared  # held here: what keeps a visitor's teacher loaded
    default_layer: str  # the family's default hook (the end of the network's body)
    early_layer: str  # an early body stage of the family (the sweep's cheap hook point)
    stages: list[str]  # the body's stages, in forward order: every hook point a search tries

    @property
    def loaded(self) -> LoadedTeacher:
        return self.shared.loaded

    @property
    def model(self) -> nn.Module:
        return self.shared.loaded.model

    @property
    def layers(self) -> list[FeatureMap]:
        return self.shared.layers

    @property
    def max_side(self) -> int:
        """The largest image side (px out) it serves: the upload cap, or less for a teacher too slow for it."""
        cost = self.loaded.cost
        return cost.side * self.loaded.scale if cost and cost.serves_less else MAX_SIDE


def probe(loaded: LoadedTeacher, multiple: int = 1) -> torch.Tensor:
    """A seeded 1 x 3 x H x W image that meets the teacher's size rule as it is (padding would
    hide which maps follow the input), sides also multiples of `multiple`, and not square."""
    m = math.lcm(loaded.size_multiple, multiple)
    h = -(-max(PROBE_SIDE, loaded.size_minimum) // m) * m
    w = h + -(-16 // m) * m
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def body_layers(loaded: LoadedTeacher, device: torch.device) -> list[FeatureMap]:
    """The teacher's hookable layers, found with a probe that shows its body stages: a network that pads
    inside its forward to a multiple its size rule does not state (a window of 7, 12 or 16) is probed
    again at sides of that multiple. Refused where the body still does not show (never only the output)."""
    first = probe(loaded).to(device)
    layers = hookable_layers(loaded.model, first)
    if not any(re.fullmatch(loaded.stages, f.name) for f in layers):
        fitted = probe(loaded, hidden_multiple(loaded.model, first)).to(device)
        layers = hookable_layers(loaded.model, fitted)
    if not any(re.fullmatch(loaded.stages, f.name) for f in layers):
        raise TeacherLoadError(f"{loaded.origin} shows none of its body stages as a feature map that follows the "
                               f"input's size: nothing to hook")
    return layers


def hook_layer(layers: list[FeatureMap], pattern: str) -> str:
    """The last layer whose name matches a family's pattern (its default hook, or its early stage);
    else the last map at the input's resolution with more channels than an image; else the last map."""
    names = [f.name for f in layers if re.fullmatch(pattern, f.name)]
    names = names or [f.name for f in layers if f.scale == 1 and f.channels > 3] or [f.name for f in layers]
    return names[-1]


def session_teacher(task_name: str, source: Source = "", device: torch.device = torch.device("cpu"),
                    budget: Budget | None = APP_BUDGET) -> SessionTeacher:
    """A session's teacher on `device` (its Distill students train there too); refuse one whose scale
    does not fit the task, one over the cost `budget`, or one that offers no feature map to hook."""
    task = get_task(task_name)
    if not isinstance(source, os.PathLike):
        source = (source or "").strip() or task_name
    shared = shared_teacher(source, device, budget)
    loaded, layers = shared.loaded, shared.layers
    if loaded.scale != task.scale:
        raise TeacherLoadError(f"this teacher upscales x{loaded.scale}, but task {task.name} needs "
                               f"x{task.scale}: pick the matching task")
    return SessionTeacher(task, source, shared, hook_layer(layers, loaded.default_layer),
                          hook_layer(layers, loaded.early_layer),
                          [f.name for f in layers if re.fullmatch(loaded.stages, f.name)])
