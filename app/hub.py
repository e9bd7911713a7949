"""Load a teacher from a bundled folder or a Hub repo: safetensors only, allow-listed architectures.

A repo id typed into the app is untrusted input. So files are size-checked before they are
downloaded, the config is checked against the allow-list and the model is sized on the meta device
before a byte of weights is read, and nothing is ever unpickled.
"""
from __future__ import annotations

import inspect
import json
import os
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from safetensors.torch import load_file

from app.modelcard import read_quality
from app.nets import ARCHITECTURES, count_params
from app.tasks import TASKS

MODELS = Path(__file__).resolve().parent.parent / "models"
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
MAX_PARAMS = 5_000_000  # 20 MB in float32; the bundled teachers have about 0.6M
MAX_SETTING = 256  # cap on any number in a config: even on the meta device each layer costs time to build
MAX_BYTES = {CONFIG: 2**16, CARD: 2**20, WEIGHTS: 4 * MAX_PARAMS + 2**20}


class TeacherLoadError(ValueError):
    """A teacher source that cannot be used; the message is meant for the user."""


@dataclass
class LoadedTeacher:
    model: torch.nn.Module  # in eval mode
    architecture: str
    config: dict
    params: int
    origin: str  # where the weights came from, in words
    scale: int = 1  # output side / input side
    card: str = ""  # the model card (README.md), if there is one
    warning: str = ""  # set when another source stood in for the requested one

    @property
    def quality(self) -> str:
        return read_quality(self.card)


def bundled_teachers() -> dict[str, Path]:
    """Task name -> models/<task>/ folder, for every bundled teacher that has its weights."""
    return {p.parent.name: p.parent for p in sorted(MODELS.glob(f"*/{WEIGHTS}"))}


def save_teacher(model: torch.nn.Module, folder: Path) -> None:
    """Write config.json (with its "architecture") + model.safetensors: the layout load_teacher reads."""
    model.save_pretrained(folder, config={**model._hub_mixin_config, "architecture": type(model).__name__})


def load_teacher(source: str | os.PathLike, revision: str | None = None,
                 fallback_task: str | None = None) -> LoadedTeacher:
    """Load a teacher from a bundled task (`dehaze`), a Hub repo id (`owner/name`) or a local folder.

    Strings name only bundled teachers (`dehaze`, or the path of models/dehaze) or Hub repos, so a
    text box cannot read other folders; code may pass any folder as a `Path`. When the Hub cannot be
    reached, a repo falls back to the bundled teacher of `fallback_task` or of the task its name
    ends with (`someone/asvp-dehaze`), with `warning` saying so.
    """
    if isinstance(source, os.PathLike):
        return _load_folder(Path(source), f"local folder {source}")
    source, bundled = source.strip(), bundled_teachers()
    if (folder := _bundled_folder(source, bundled)) is not None:
        return _load_folder(folder, f"bundled models/{folder.name}")
    if source in TASKS:
        raise TeacherLoadError(f"there is no bundled {source} teacher yet: train it with "
                               f"`python -m app.train --task {source}`")
    _check_repo_id(source, revision, bundled)
    try:
        folder = _download(source, revision)
    except LocalEntryNotFoundError:  # offline, connection refused, Hub down, and not in the HF cache
        task = fallback_task or next((t for t in sorted(TASKS, key=len, reverse=True)
                                      if source.lower().replace("-", "_").endswith(t)), None)
        if task not in bundled:
            raise TeacherLoadError(f"the Hub is unreachable, {source} is not in the local cache and there is "
                                   "no bundled teacher to fall back to") from None
        loaded = _load_folder(bundled[task], f"bundled models/{task}")
        loaded.origin = f"Hub unreachable: fell back to bundled models/{task}"
        loaded.warning = f"The Hub could not be reached, so {source} was replaced by the bundled {task} teacher."
        return loaded
    except RepositoryNotFoundError:
        raise TeacherLoadError(f"Hub repo {source} was not found (or it is private or gated)") from None
    except RevisionNotFoundError:
        raise TeacherLoadError(f"Hub repo {source} has no revision {revision!r}") from None
    except HfHubHTTPError as e:
        raise TeacherLoadError(f"the Hub answered HTTP {e.response.status_code} for {source}") from None
    return _load_folder(folder, f"Hub repo {source} @ {folder.name}")


def _bundled_folder(source: str, bundled: dict[str, Path]) -> Path | None:
    """The bundled folder a string names: a task, or the path of its models/<task>/ folder."""
    if source in bundled:
        return bundled[source]
    if not source or ".." in source:  # keep paths plain: no walking out of and back into models/
        return None
    resolved = Path(source).resolve()
    return next((p for p in bundled.values() if p.resolve() == resolved), None)


def _check_repo_id(repo_id: str, revision: str | None, bundled: dict[str, Path]) -> None:
    """Refuse anything but a plain `owner/name` (or `name`): paths and traversal never reach the cache."""
    try:
        if ".." in repo_id or "\\" in repo_id or Path(repo_id).is_absolute():
            raise HFValidationError("a path, not a repo id")
        validate_repo_id(repo_id)
    except HFValidationError:
        raise TeacherLoadError(f"{repo_id!r} is neither a bundled teacher ({', '.join(bundled) or 'none yet'}) "
                               "nor a Hub repo id like owner/name") from None
    if revision is not None and (".." in revision or revision.startswith("/") or "\\" in revision):
        raise TeacherLoadError(f"{revision!r} is not a revision (a branch, tag or commit)")


def _download(repo_id: str, revision: str | None) -> Path:
    """Fetch config, weights and (if any) card into the HF cache; return their snapshot folder."""
    try:
        config = _fetch(repo_id, CONFIG, revision)
    except RemoteEntryNotFoundError:
        raise TeacherLoadError(f"Hub repo {repo_id} has no {CONFIG}") from None
    try:
        weights = _fetch(repo_id, WEIGHTS, revision)
    except RemoteEntryNotFoundError:
        try:  # only to say why: the listing never downloads a pickle
            files = HfApi().list_repo_files(repo_id, revision=revision)
        except HfHubHTTPError:
            files = []
        _refuse_pickles(f"Hub repo {repo_id}", files)
        raise TeacherLoadError(f"Hub repo {repo_id} has no {WEIGHTS}") from None
    try:
        _fetch(repo_id, CARD, revision)
    except EntryNotFoundError:  # the card is optional, online or offline
        pass
    if weights.parent != config.parent:
        raise TeacherLoadError(f"Hub repo {repo_id} changed while downloading; try again")
    return weights.parent


def _fetch(repo_id: str, filename: str, revision: str | None) -> Path:
    """hf_hub_download, after a dry run has shown the file is small enough to take."""
    size = hf_hub_download(repo_id, filename, revision=revision, dry_run=True).file_size
    _check_size(f"Hub repo {repo_id}", filename, size)
    return Path(hf_hub_download(repo_id, filename, revision=revision))


def _check_size(origin: str, filename: str, size: int | None) -> None:
    if size is None or size > MAX_BYTES[filename]:
        raise TeacherLoadError(f"{filename} of {origin} is {'of unknown size' if size is None else f'{size:,} bytes'}"
                               f"; the limit is {MAX_BYTES[filename]:,} bytes")


def _refuse_pickles(origin: str, files: list[str]) -> None:
    if pickles := [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]:
        raise TeacherLoadError(f"{origin} has no {WEIGHTS}: only a pickle checkpoint found ({pickles[0]}); "
                               "ASVP Lab never unpickles")


def _load_folder(folder: Path, origin: str) -> LoadedTeacher:
    """Check and load config.json + model.safetensors (+ README.md) from one folder."""
    if not (folder / WEIGHTS).is_file():
        _refuse_pickles(origin, [p.name for p in folder.glob("*")])
        raise TeacherLoadError(f"{origin} has no {WEIGHTS}")
    if not (folder / CONFIG).is_file():
        raise TeacherLoadError(f"{origin} has no {CONFIG}")
    for name in (CONFIG, WEIGHTS, CARD):
        if (folder / name).is_file():
            _check_size(origin, name, (folder / name).stat().st_size)
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TeacherLoadError(f"{CONFIG} of {origin} is not valid JSON: {e}") from None
    model, arch, params = _build(config)
    try:
        weights = load_file(folder / WEIGHTS)
    except SafetensorError as e:
        raise TeacherLoadError(f"{WEIGHTS} of {origin} is not a valid safetensors file: {e}") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise TeacherLoadError(f"the weights of {origin} do not match its {CONFIG}: {detail}") from None
    card = (folder / CARD).read_text(encoding="utf-8", errors="replace") if (folder / CARD).is_file() else ""
    return LoadedTeacher(model.eval(), arch, config, params, origin, int(getattr(model, "scale", 1)), card)


def _build(config) -> tuple[torch.nn.Module, str, int]:
    """Build the model a config describes, after checking it against the allow-list and the size cap."""
    if not isinstance(config, dict):
        raise TeacherLoadError(f"{CONFIG} must hold a JSON object")
    kwargs = dict(config)
    arch = kwargs.pop("architecture", None)
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise TeacherLoadError(f"architecture {arch!r} is not allowed; known: {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    hints = typing.get_type_hints(cls.__init__)
    if unknown := sorted(set(kwargs) - (set(inspect.signature(cls.__init__).parameters) - {"self"})):
        raise TeacherLoadError(f"{CONFIG} has unknown keys for {arch}: {', '.join(unknown)}")
    for key, value in kwargs.items():
        kwargs[key] = _setting(arch, key, value, hints.get(key))
    with torch.device("meta"):  # sizes the model without allocating it
        params = count_params(cls(**kwargs))
    if params > MAX_PARAMS:
        raise TeacherLoadError(f"{CONFIG} asks for a {arch} with {params:,} parameters; "
                               f"the limit is {MAX_PARAMS:,}")
    return cls(**kwargs), arch, params


def _setting(arch: str, key: str, value, hint):
    """One config value checked against its annotation: a flag, a number in 0..1, or an int or a
    tuple of ints, each in 1..MAX_SETTING."""
    if hint is bool:
        if type(value) is bool:
            return value
        raise TeacherLoadError(f"{CONFIG}: {arch} needs {key} as true or false, not {reprlib.repr(value)}")
    if hint is float:
        if type(value) in (int, float) and 0 <= value <= 1:
            return float(value)
        raise TeacherLoadError(f"{CONFIG}: {arch} needs {key} as a number from 0 to 1, not {reprlib.repr(value)}")
    if typing.get_origin(hint) is tuple:
        n = len(typing.get_args(hint))
        if isinstance(value, list) and len(value) == n and all(map(_small_int, value)):
            return tuple(value)
        shape = f"a list of {n} whole numbers"
    elif hint is int and _small_int(value):
        return value
    else:
        shape = "a whole number"
    raise TeacherLoadError(f"{CONFIG}: {arch} needs {key} as {shape} from 1 to {MAX_SETTING}, "
                           f"not {reprlib.repr(value)}")


def _small_int(value) -> bool:
    return type(value) is int and 1 <= value <= MAX_SETTING
