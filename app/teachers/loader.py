"""Load a teacher from a bundled folder, a Hub repo or a local file.

Two layouts: ours (config.json naming an allow-listed class of app.teachers.networks, plus
model.safetensors), and a bare checkpoint of a field architecture (SwinIR, NAFNet, ...: one
.safetensors file, or a .pth/.pt/.ckpt pickle, no config), which app.teachers.checkpoint reads and
spandrel detects; a repo with both kinds serves its safetensors. A source typed into the app is
untrusted input: `owner/name`, optionally `owner/name@revision` and `/file.safetensors` (or `.pth`).
Files are size-checked before they are downloaded, configs and safetensors headers are checked before
a byte of weights is read, and pickles only ever meet torch's safe unpickler.
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

from app.data.tasks import TASKS
from app.teachers.budget import Cost
from app.teachers.checkpoint import CONVERT, MAX_HEADER_BYTES
from app.teachers.checkpoint import MAX_PARAMS as MAX_CHECKPOINT_PARAMS
from app.teachers.checkpoint import PICKLE_CHECKPOINTS, TeacherLoadError, read_checkpoint
from app.teachers.families import OWN, Family
from app.teachers.modelcard import read_quality
from app.teachers.ncnn import NcnnError
from app.teachers.networks import CONFIG_CLASSES, count_params
from app.teachers.pretrained import PRETRAINED, WHEEL, WHEEL_VERSION, Pretrained, converted
from app.teachers.registry import CARD, WEIGHTS, bundled
from app.teachers.seeding import drawn_aside


CONFIG = "config.json"
CHECKPOINT_SUFFIXES = (".safetensors", *PICKLE_CHECKPOINTS)
OTHER_PICKLES = (".bin", ".pkl", ".pickle")  # a transformers model or an arbitrary pickle: never a teacher here
MAX_PARAMS = 5_000_000  # 20 MB in float32; the bundled teachers have about 0.6M
MAX_SETTING = 256  # cap on any number in a config: even on the meta device each layer costs time to build
MAX_BYTES = {CONFIG: 2**16, CARD: 2**20, WEIGHTS: 4 * MAX_PARAMS + 2**20}
MAX_CHECKPOINT_BYTES = 4 * MAX_CHECKPOINT_PARAMS + MAX_HEADER_BYTES + 8



@dataclass
class LoadedTeacher:
    """A loaded teacher and what it states about itself (like spandrel's ImageModelDescriptor)."""

    model: torch.nn.Module  # in eval mode
    architecture: str
    config: dict
    params: int
    origin: str  # where the weights came from, in words
    scale: int = 1  # output side / input side
    card: str = ""  # the model card (README.md), if there is one
    warning: str = ""  # set when another source stood in for the requested one
    family: Family = OWN
    size_multiple: int = 1  # inputs run as they are when both sides are multiples of this...
    size_minimum: int = 0  # ...and at least this; others are padded (and the output cropped)
    default_layer: str = OWN.default_layer  # regex: the last hookable layer that matches it is the default hook
    early_layer: str = OWN.early_layer  # regex, likewise: an early body stage
    stages: str = OWN.stages  # regex: every body stage, the hook points a search tries
    cost: Cost | None = None  # what a look at the largest upload costs (measured before a loaded teacher serves)
    weights_file: Path | None = None  # the file the weights came from (a search's rows carry its checksum)
    pinned: str = ""  # a Hub source at the commit and file it came from (it loads again offline from the cache)

    @property
    def quality(self) -> str:
        return read_quality(self.card)


def save_teacher(model: torch.nn.Module, folder: Path) -> None:
    """Write config.json (with its "architecture") + model.safetensors: the layout load_teacher reads."""
    model.save_pretrained(folder, config={**model._hub_mixin_config, "architecture": type(model).__name__})


def load_teacher(source: str | os.PathLike, revision: str | None = None, filename: str | None = None,
                 fallback_task: str | None = None) -> LoadedTeacher:
    """Load a teacher from a bundled folder (`dehaze`, `dehaze-nafnet`), a Hub repo or a local path.

    A Hub source is `owner/name`, with an optional `@revision` and `/file.safetensors` or `/file.pth` (or the
    `revision` and `filename` arguments). Strings name only bundled teachers (or the path of their
    models/ folder) or Hub repos, so a text box cannot read other files; code may pass any folder or
    checkpoint file as a `Path`. When the Hub cannot be reached, a repo falls back to the bundled
    teacher of `fallback_task` or of the task its name ends with (`someone/asvp-dehaze`), with
    `warning` saying so.
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
        if path.is_file():
            return _load_file(path, f"local file {path.name}")
        return _load_folder(path, f"local folder {source}")
    source, folders = source.strip(), {name: t.folder for name, t in bundled().items()}
    if source in PRETRAINED:
        return _load_pretrained(PRETRAINED[source])
    if (folder := _bundled_folder(source, folders)) is not None:
        return _load_folder(folder, f"bundled models/{folder.name}")
    if source in TASKS:
        raise TeacherLoadError(f"there is no bundled {source} teacher yet: train it with "
                               f"`python -m app.train --task {source}`")
    repo_id, revision, filename = parse_source(source, revision, filename, folders)
    try:
        path = _download(repo_id, revision, filename)
    except LocalEntryNotFoundError:  # offline, connection refused, Hub down, and not in the HF cache
        task = fallback_task or next((t for t in sorted(TASKS, key=len, reverse=True)
                                      if repo_id.lower().replace("-", "_").endswith(t)), None)
        if task not in folders:
            raise TeacherLoadError(f"the Hub is unreachable, {repo_id} is not in the local cache and there is "
                                   "no bundled teacher to fall back to") from None
        loaded = _load_folder(folders[task], f"bundled models/{task}")
        loaded.origin = f"Hub unreachable: fell back to bundled models/{task}"
        loaded.warning = f"The Hub could not be reached, so {repo_id} was replaced by the bundled {task} teacher."
        return loaded
    except RepositoryNotFoundError:
        raise TeacherLoadError(f"Hub repo {repo_id} was not found (or it is private or gated)") from None
    except RevisionNotFoundError:
        raise TeacherLoadError(f"Hub repo {repo_id} has no revision {revision!r}") from None
    except HfHubHTTPError as e:
        raise TeacherLoadError(f"the Hub answered HTTP {e.response.status_code} for {repo_id}") from None
    if path.is_file():
        loaded = _with_card(_load_file(path, f"Hub repo {repo_id} @ {path.parent.name}, {path.name}"), path.parent)
    else:
        loaded = _load_folder(path, f"Hub repo {repo_id} @ {path.name}")
    loaded.pinned = _pinned(repo_id, path)
    return loaded


def _pinned(repo_id: str, path: Path) -> str:
    """`owner/name@commit[/file]` of a file or folder in the HF cache (…/snapshots/<commit>/<file>)."""
    parts = path.parts
    at = len(parts) - 1 - parts[::-1].index("snapshots")
    inside = "/".join(parts[at + 2:])
    return f"{repo_id}@{parts[at + 1]}" + (f"/{inside}" if inside else "")


def _bundled_folder(source: str, bundled: dict[str, Path]) -> Path | None:
    """The bundled folder a string names: its name, or the path of its models/<name>/ folder."""
    if source in bundled:
        return bundled[source]
    if not source or ".." in source or not source.isprintable():  # plain paths only
        return None
    resolved = Path(source).resolve()
    return next((p for p in bundled.values() if p.resolve() == resolved), None)


def parse_source(source: str, revision: str | None, filename: str | None,
                 bundled: dict[str, Path]) -> tuple[str, str | None, str | None]:
    """`owner/name[@revision][/file.safetensors]` as (repo id, revision, file name), refusing
    anything else: paths and traversal never reach the cache."""
    not_a_source = TeacherLoadError(
        f"{reprlib.repr(source)} is neither a bundled teacher ({', '.join(bundled) or 'none yet'}) nor a Hub repo id "
        "like owner/name (optionally owner/name@revision/file.safetensors)")
    if not source.isprintable() or ".." in source or "\\" in source or Path(source).is_absolute():
        raise not_a_source
    owner, _, rest = source.partition("/")
    name, _, file_part = rest.partition("/")
    name, at, rev_part = name.partition("@")
    repo_id = f"{owner}/{name}" if rest else owner
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise not_a_source from None
    if at:
        revision = revision or rev_part
    filename = filename or file_part or None
    for what, value in (("revision", revision), ("file name", filename)):
        if value is not None and (not value or not value.isprintable() or ".." in value or value.startswith("/")
                                  or "\\" in value):
            raise TeacherLoadError(f"{reprlib.repr(value)} is not a {what} of a Hub repo")
    return repo_id, revision, filename


def _download(repo_id: str, revision: str | None, filename: str | None) -> Path:
    """Fetch what a teacher needs into the HF cache: the named or the only checkpoint of a
    bare checkpoint (returned as a file), or config, weights and card of our layout (their folder)."""
    origin = f"Hub repo {repo_id}"
    if filename is None:
        try:
            config = _fetch(repo_id, CONFIG, revision)
        except RemoteEntryNotFoundError:
            filename = _choose_checkpoint(origin, _list_files(repo_id, revision))
        else:
            return _download_own_layout(repo_id, revision, config)
    _refuse_pickles(origin, [filename], named=True)
    if not filename.lower().endswith(CHECKPOINT_SUFFIXES):
        raise TeacherLoadError(f"{filename} of {origin} is not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    try:
        weights = _fetch(repo_id, filename, revision, MAX_CHECKPOINT_BYTES)
    except RemoteEntryNotFoundError:
        raise TeacherLoadError(f"{origin} has no file {filename}") from None
    try:
        _fetch(repo_id, CARD, revision)
    except EntryNotFoundError:  # the card is optional, online or offline
        pass
    return weights


def _download_own_layout(repo_id: str, revision: str | None, config: Path) -> Path:
    try:
        weights = _fetch(repo_id, WEIGHTS, revision)
    except RemoteEntryNotFoundError:
        _refuse_pickles(f"Hub repo {repo_id}", _list_files(repo_id, revision))
        raise TeacherLoadError(f"Hub repo {repo_id} has no {WEIGHTS}") from None
    try:
        _fetch(repo_id, CARD, revision)
    except EntryNotFoundError:
        pass
    if weights.parent != config.parent:
        raise TeacherLoadError(f"Hub repo {repo_id} changed while downloading; try again")
    return weights.parent


def _list_files(repo_id: str, revision: str | None) -> list[str]:
    """The repo's file names (a listing downloads nothing)."""
    try:
        return HfApi().list_repo_files(repo_id, revision=revision)
    except EntryNotFoundError:
        return []


def _choose_checkpoint(origin: str, files: list[str]) -> str:
    """The one checkpoint of a repo without config.json (safetensors before pickles); otherwise say
    what is there."""
    for suffixes in ((".safetensors",), PICKLE_CHECKPOINTS):
        candidates = [f for f in files if f.lower().endswith(suffixes)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise TeacherLoadError(f"{origin} holds several checkpoints ({', '.join(sorted(candidates)[:8])}): "
                                   f"name one, as owner/name/{sorted(candidates)[0]}")
    _refuse_pickles(origin, files)
    raise TeacherLoadError(f"{origin} has no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) and no {CONFIG}"
                           + (f" (it holds {', '.join(sorted(files)[:8])})" if files else ""))


def _fetch(repo_id: str, filename: str, revision: str | None, limit: int | None = None) -> Path:
    """hf_hub_download, after a dry run has shown the file is small enough to take."""
    size = hf_hub_download(repo_id, filename, revision=revision, dry_run=True).file_size
    _check_size(f"Hub repo {repo_id}", filename, size, limit)
    return Path(hf_hub_download(repo_id, filename, revision=revision))


def _check_size(origin: str, filename: str, size: int | None, limit: int | None = None) -> None:
    limit = limit or MAX_BYTES[filename]
    if size is None or size > limit:
        raise TeacherLoadError(f"{filename} of {origin} is {'of unknown size' if size is None else f'{size:,} bytes'}"
                               f"; the limit is {limit:,} bytes")


def _refuse_pickles(origin: str, files: list[str], named: bool = False) -> None:
    """Refuse a pickle that is no restoration checkpoint (the one named, or a listing with nothing
    else) without reading it."""
    if pickles := [f for f in files if f.lower().endswith(OTHER_PICKLES)]:
        found = (f"{pickles[0]} of {origin} is a pickle of another kind" if named
                 else f"{origin} has no checkpoint: only pickles of another kind ({', '.join(pickles[:8])})")
        raise TeacherLoadError(f"{found}; the lab reads {', '.join(CHECKPOINT_SUFFIXES)} files only. {CONVERT}")


def _load_folder(folder: Path, origin: str) -> LoadedTeacher:
    """Our layout (config.json + model.safetensors + README.md), or one bare checkpoint (+ README.md)."""
    checkpoints = sorted(folder.glob("*.safetensors")) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in PICKLE_CHECKPOINTS)
    if not (folder / CONFIG).is_file() and len(checkpoints) == 1:
        return _with_card(_load_file(checkpoints[0], origin), folder)
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
    return _with_card(LoadedTeacher(model.eval(), arch, config, params, origin, int(getattr(model, "scale", 1)),
                                    weights_file=folder / WEIGHTS), folder)


def _with_card(loaded: LoadedTeacher, folder: Path) -> LoadedTeacher:
    """Attach the model card (README.md) beside the weights, if there is one."""
    if (folder / CARD).is_file():
        _check_size(loaded.origin, CARD, (folder / CARD).stat().st_size)
        loaded.card = (folder / CARD).read_text(encoding="utf-8", errors="replace")
    return loaded


def _load_pretrained(pretrained: Pretrained) -> LoadedTeacher:
    """One of Real-ESRGAN's pretrained models, converted from the installed wheel on first use."""
    try:
        path = converted(pretrained.name)
    except (FileNotFoundError, NcnnError) as e:
        raise TeacherLoadError(str(e)) from None
    origin = f"Real-ESRGAN's pretrained {pretrained.name} (from {WHEEL} {WHEEL_VERSION})"
    loaded = _load_file(path, origin, pretrained.scale)
    return _with_card(loaded, pretrained.folder)


def _load_file(path: Path, origin: str, scale: int | None = None) -> LoadedTeacher:
    """A bare checkpoint of an allowed field family (app.teachers.checkpoint does the checking)."""
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        _refuse_pickles(origin, [path.name], named=True)
        raise TeacherLoadError(f"{origin} is not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    _check_size(origin, path.name, path.stat().st_size, MAX_CHECKPOINT_BYTES)
    found = read_checkpoint(path, origin, scale)
    model = found.model
    return LoadedTeacher(model, found.family.title, {}, found.params, origin, model.scale, family=found.family,
                         size_multiple=model.rule.multiple_of, size_minimum=model.rule.minimum,
                         default_layer="net." + found.family.default_layer,
                         early_layer="net." + found.family.early_layer,
                         stages=f"net\\.({found.family.stages})", weights_file=path)


def _build(config) -> tuple[torch.nn.Module, str, int]:
    """Build the model a config describes, after checking it against the allow-list and the size cap."""
    if not isinstance(config, dict):
        raise TeacherLoadError(f"{CONFIG} must hold a JSON object")
    kwargs = dict(config)
    arch = kwargs.pop("architecture", None)
    if not isinstance(arch, str) or arch not in CONFIG_CLASSES:
        raise TeacherLoadError(f"architecture {arch!r} is not allowed; known: {', '.join(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[arch]
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
    with drawn_aside():  # its random init is overwritten by the weights
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
