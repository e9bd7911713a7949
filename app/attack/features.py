"""A teacher's features at its hooked layers without the rest of its forward.

An exposed setting (and the clean one) leaves the answers untouched, bit for bit, so a study that has the clean
answers of a seed's queries needs only the features a feature-KD attacker is handed: each forward can end once the
hooked layers have run. On Real-ESRGAN x4plus hooked at the end of its trunk, the upsampler's half of a forward
is saved; hooked at an early block, nearly all of it.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from app.defense.asvp import FeatureRecord, amplify, defend
from app.defense.setting import Setting
from app.devices import device_of


class _Seen(Exception):
    """Ends a forward once every hooked layer has run as often as in a whole one: nothing after is read."""


@contextmanager
def _counted(teacher: nn.Module, names: tuple[str, ...], stop_at: Counter | None = None) -> Iterator[Counter]:
    """Count the runs of the named layers in the forwards of the block; with `stop_at`, end a forward (raise
    `_Seen`) once each has run that often."""
    modules, runs = dict(teacher.named_modules()), Counter()

    def hook(name: str):
        def counted(*_):
            runs[name] += 1
            if stop_at is not None and all(runs[n] >= stop_at[n] for n in stop_at):
                raise _Seen
        return counted

    handles = [modules[name].register_forward_hook(hook(name)) for name in dict.fromkeys(names)]
    try:
        yield runs
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def teacher_features(teacher: nn.Module, x: torch.Tensor, defense: Setting, chunk: int = 32) -> list[torch.Tensor]:
    """The (exposed) features at each hooked layer for every query, equal to `ask_teacher`'s: the same chunks, each
    forward ended after the hooked layers' last run (how often a whole forward runs them is counted on one query,
    so a layer a network runs twice is read where a whole forward leaves it)."""
    record, x = FeatureRecord(), x.to(device_of(teacher))
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in defense.layers}
    with defend(teacher, defense, record):  # its hooks come first: the record is written before a forward ends
        with _counted(teacher, defense.layers) as whole:
            teacher(x[:1])
        for part in x.split(chunk):
            try:
                with _counted(teacher, defense.layers, stop_at=whole):
                    teacher(part)
            except _Seen:
                pass
            for name, seen in feats.items():
                seen.append(record.exposed[name])
    return [torch.cat(seen) for seen in feats.values()]


def exposed_from_clean(clean: list[torch.Tensor], defense: Setting, chunk: int = 32) -> list[torch.Tensor]:
    """`teacher_features`'s exposed maps, made from the clean ones of the same queries without a forward: an exposed
    setting changes nothing a later layer sees, so each hooked map is the op on that layer's clean map, chunk by
    chunk as the hooks amplify each forward's."""
    return [torch.cat([amplify(part, defense) for part in feat.split(chunk)]) for feat in clean]
