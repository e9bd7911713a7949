"""A heavy teacher's passes kept on disk: its answers to one seed's queries under one setting outlive the
worker that asked them, so the search's other workers, and the search resumed in a later session, read them
back instead of asking again (an x4plus pass is minutes of a core; a restart used to spend its first
40 minutes asking what the last run had asked).

A pass is filed under everything its numbers come from: what was asked (teacher, setting, queries, device),
this checkout's recipe fingerprint on the teacher (app.study.recipe: any change of the numbers on the
teacher's path changes it) and this machine's kind (another CPU rounds otherwise). A pass quicker than
KEEP_AFTER_S is not kept (a bundled teacher's take milliseconds); beyond ASVP_PASSES_GB the least recently
read go first. They live under ASVP_PASSES (default: the lab's cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from app.devices import machine
from app.study.recipe import fingerprint_here
from app.teachers.pretrained import LAB_CACHE


FOLDER = Path(os.environ.get("ASVP_PASSES", LAB_CACHE / "passes"))
KEEP_AFTER_S = 5.0  # a pass that took less is asked again: reading it back would not save much
DEFAULT_GB = "20"  # unless ASVP_PASSES_GB says otherwise; x4plus: ~40 MB a pass, a few hundred a stage


def most_bytes() -> float:
    """How much the filed passes may take: ASVP_PASSES_GB gigabytes (0 files none)."""
    given = os.environ.get("ASVP_PASSES_GB", DEFAULT_GB)
    try:
        gb = float(given)
    except ValueError:
        gb = float("nan")
    if not gb >= 0:
        raise ValueError(f"ASVP_PASSES_GB must be a number of gigabytes (0 files no teacher pass), got {given!r}")
    return gb * 2**30


def _digest(what: dict) -> str:
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def shelf(task: str, teacher: str) -> Path:
    """The folder of one teacher's passes on this machine: it exists once a pass of the teacher was slow enough
    to keep, so a light teacher never costs its recipe fingerprint here."""
    return FOLDER / _digest(dict(task=task, teacher=str(teacher), machine=machine()))


def pass_file(task: str, teacher: str, asked: dict) -> Path:
    """Where the pass `asked` (what was asked of the teacher, as plain values) is filed."""
    return shelf(task, teacher) / f"{_digest(dict(asked, recipe=fingerprint_here(task, teacher)))}.safetensors"


def kept_pass(task: str, teacher: str, asked: dict, ask: Callable[[], dict[str, torch.Tensor]],
              device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of the pass `asked` of `teacher`, read back where this machine filed them, or asked now (and
    filed when they took KEEP_AFTER_S or more)."""
    if shelf(task, teacher).exists():
        path = pass_file(task, teacher, asked)
        try:
            tensors = load_file(path, device=str(device))
            os.utime(path)  # read lately: the last to go
            return tensors
        except FileNotFoundError:  # not filed yet, or just removed by another worker's keep_within
            pass
        except SafetensorError:  # unreadable (a disk that filled while it was written): asked again
            path.unlink(missing_ok=True)
    start = time.perf_counter()
    tensors = ask()
    if time.perf_counter() - start >= KEEP_AFTER_S and most_bytes() > 0:
        _file(pass_file(task, teacher, asked), tensors)
    return tensors


def _file(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")  # workers filing the same pass don't collide
    try:
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, partial)
        partial.replace(path)
    except OSError:  # a full disk only costs asking again later
        partial.unlink(missing_ok=True)
    keep_within(FOLDER, most_bytes())


def keep_within(folder: Path, limit: float, pattern: str = "*/*.safetensors") -> None:
    """Remove the least recently read files of `pattern` (passes by default) until the folder's fit in `limit` bytes
    (another worker may be removing them too)."""
    sizes = {}
    for f in folder.glob(pattern):
        try:
            sizes[f] = f.stat()
        except FileNotFoundError:
            continue
    total = sum(s.st_size for s in sizes.values())
    for oldest in sorted(sizes, key=lambda f: sizes[f].st_mtime)[:-1]:  # the newest stays, whatever its size
        if total <= limit:
            return
        total -= sizes[oldest].st_size
        oldest.unlink(missing_ok=True)
