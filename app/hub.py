"""Load a teacher from a Hub repo id or a bundled folder: safetensors only, allow-listed architectures.

Nothing is ever unpickled: the config is validated and the model is sized on the meta device
before a byte of weights is read, and weights come only from `model.safetensors`.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                    RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError
from safetensors.torch import load_file

from app.modelcard import read_quality
from app.nets import ARCHITECTURES, count_params

MODELS = Path(__file__).resolve().parent.parent / "models"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
PICKLES = ("pytorch_model.bin", "model.pt", "model.pth", "model.pkl", "model.ckpt")
MAX_PARAMS = 5_000_000  # ~20 MB in float32: teachers here are small; anything bigger is refused unbuilt


class TeacherLoadError(ValueError):
    """A teacher source that cannot be used, with a message fit for the user."""


@dataclass
class LoadedTeacher:
    model: torch.nn.Module
    architecture: str
    config: dict
    params: int
    origin: str  # where it came from, in words
    card: str = ""
    warning: str = ""  # set when the requested source was replaced (offline fallback)

    @property
    def quality(self) -> str:
        return read_quality(self.card)


def bundled_teachers() -> dict[str, Path]:
    """Task name -> bundled folder, for every models/<task>/ holding weights."""
    return {p.parent.name: p.parent for p in sorted(MODELS.glob(f"*/{WEIGHTS}"))}


def build(config: dict):
    """Validate a config against the allow-list and build the model (no weights yet)."""
    if not isinstance(config, dict):
        raise TeacherLoadError("config.json must hold a JSON object")
    kwargs = dict(config)
    arch = kwargs.pop("architecture", None)
    if arch not in ARCHITECTURES:
        raise TeacherLoadError(f"architecture {arch!r} is not allowed; known: {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if set(kwargs) - accepted:
        raise TeacherLoadError(f"config.json has unknown keys for {arch}: {', '.join(sorted(set(kwargs) - accepted))}")
    if "blocks" in kwargs and isinstance(kwargs["blocks"], list):
        kwargs["blocks"] = tuple(kwargs["blocks"])
    try:
        with torch.device("meta"):
            params = count_params(cls(**kwargs))
    except Exception as e:  # any bad value (wrong type, negative width) ends here, unbuilt
        raise TeacherLoadError(f"config.json is not a valid {arch} config: {e}") from None
    if params > MAX_PARAMS:
        raise TeacherLoadError(f"config.json asks for {params:,} parameters (limit {MAX_PARAMS:,}): refused")
    return cls(**kwargs), arch, params


def load_folder(folder: Path, origin: str) -> LoadedTeacher:
    """Load config.json + model.safetensors from a folder; anything else is an error, never a pickle."""
    if not (folder / WEIGHTS).is_file():
        pickled = [p for p in PICKLES if (folder / p).is_file()]
        if pickled:
            raise TeacherLoadError(f"{origin} has only a pickle checkpoint ({pickled[0]}); "
                                   "ASVP Lab loads safetensors only and never unpickles")
        raise TeacherLoadError(f"{origin} has no {WEIGHTS}")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise TeacherLoadError(f"{origin} has no {CONFIG}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TeacherLoadError(f"{CONFIG} of {origin} is not valid JSON: {e}") from None
    model, arch, params = build(config)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS), strict=True)
    except (RuntimeError, SafetensorError, OSError) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise TeacherLoadError(f"the weights of {origin} do not match its config: {first}") from None
    card = (folder / CARD).read_text() if (folder / CARD).is_file() else ""
    return LoadedTeacher(model.eval(), arch, config, params, origin, card)


def _hub_folder(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """Download the files a teacher needs into the HF cache; return their folder and commit."""
    try:
        config = Path(hf_hub_download(repo_id, CONFIG, revision=revision))
    except RemoteEntryNotFoundError:
        raise TeacherLoadError(f"Hub repo {repo_id} has no {CONFIG}") from None
    try:
        weights = Path(hf_hub_download(repo_id, WEIGHTS, revision=revision))
    except RemoteEntryNotFoundError:
        if any(_on_hub(repo_id, p, revision) for p in PICKLES):
            raise TeacherLoadError(f"Hub repo {repo_id} has only a pickle checkpoint; "
                                   "ASVP Lab loads safetensors only and never unpickles") from None
        raise TeacherLoadError(f"Hub repo {repo_id} has no {WEIGHTS}") from None
    try:
        hf_hub_download(repo_id, CARD, revision=revision)
    except EntryNotFoundError:  # the card is optional, online or offline
        pass
    if weights.parent != config.parent:
        raise TeacherLoadError(f"Hub repo {repo_id} changed while downloading; try again")
    return weights.parent, weights.parent.name


def _on_hub(repo_id: str, filename: str, revision: str | None) -> bool:
    """Whether a file exists on the Hub, by a HEAD request: a pickle is never even downloaded."""
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision))
        return True
    except EntryNotFoundError:
        return False


def fallback_task(repo_id: str) -> str | None:
    """The bundled task a Hub repo stands for, read off its name (`someone/asvp-dehaze`)."""
    name = repo_id.rsplit("/", 1)[-1].lower().replace("-", "_")
    return next((t for t in sorted(bundled_teachers(), key=len, reverse=True) if name.endswith(t)), None)


def load_teacher(source: str, revision: str | None = None) -> LoadedTeacher:
    """A bundled task name (`dehaze`) or a Hub repo id (`owner/name`, optional revision)."""
    source = (source or "").strip()
    bundled = bundled_teachers()
    if source in bundled:
        return load_folder(bundled[source], f"bundled models/{source}")
    if ".." in source or source.startswith(("/", "\\", "~")) or "\\" in source:
        raise TeacherLoadError(f"{source!r} is not a Hub repo id (no paths allowed)")
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise TeacherLoadError(f"{source!r} is neither a bundled task ({', '.join(bundled)}) nor a Hub repo id "
                               "like owner/name") from None
    try:
        folder, commit = _hub_folder(source, revision)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise TeacherLoadError(f"Hub repo {source} (revision {revision or 'main'}) was not found or is private") from None
    except (LocalEntryNotFoundError, OSError) as e:  # offline, DNS, refused connection, timeouts
        task = fallback_task(source)
        if task is None:
            raise TeacherLoadError(f"the Hub is unreachable and {source!r} is neither cached nor a bundled task "
                                   f"({', '.join(bundled)})") from None
        loaded = load_folder(bundled[task], f"bundled models/{task}")
        loaded.warning = f"The Hub is unreachable: {source} was replaced by the bundled {task} teacher."
        loaded.origin = f"bundled models/{task} (fallback for {source})"
        return loaded
    return load_folder(folder, f"Hub repo {source} @ {commit[:10]}")
