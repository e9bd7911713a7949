"""Restoration architectures of the field, detected by spandrel from a bare state dict.

Only permissively licensed families are registered, so a model the lab loads can be shipped in an
MIT Space; each records its licence and where it comes from. spandrel detects more (SPAN, SCUNet,
HAT, ...): those are named in the refusal, with the reason.

spandrel declares torchvision as a dependency, but only two of its families use it (LaMa for
inpainting, RestoreFormer for faces: neither is registered here); it imports them at start-up. Where
no working torchvision imports (none installed, or a build for another torch), `spandrel` is imported
with a placeholder standing in for torchvision during that import only: the placeholder raises if
ever called, and it is gone from sys.modules afterwards, so other libraries that probe for
torchvision still see none. Where a real torchvision imports, spandrel gets it, untouched.
"""
from __future__ import annotations

import sys
import threading
import types
from contextlib import contextmanager
from dataclasses import dataclass


class _Unavailable:
    """What the placeholder hands out: usable as a default argument, an error when called."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> _Unavailable:
        if attr.startswith("__"):  # copy, pickle and inspect probe dunders: a placeholder has none
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise ImportError(f"{self._name} needs torchvision, which is not installed (ASVP Lab never registers "
                          "the spandrel families that use it)")


@contextmanager
def _torchvision_placeholder():
    """Stand-in modules for the torchvision names spandrel imports, for the duration of the block."""
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")

    def stand_in(prefix):
        def attribute(attr):
            if attr.startswith("__"):  # module metadata (__file__, __path__, ...): a placeholder has none
                raise AttributeError(attr)
            return _Unavailable(f"{prefix}.{attr}")
        return attribute

    for name in names:
        module = types.ModuleType(name)
        module.__getattr__ = stand_in(name)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)


def _working_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent (ImportError), or built for another torch (RuntimeError)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # leave no half-imported torchvision behind
        return False
    return True


_IMPORTING = threading.Lock()  # two sessions loading their first checkpoint at once import it once


def import_spandrel() -> types.ModuleType:
    """spandrel, with the real torchvision where one works and the placeholder where none does."""
    with _IMPORTING:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        import torch  # noqa: F401 - torch itself must never see the placeholder
        if _working_torchvision():
            import spandrel
        else:
            with _torchvision_placeholder():
                import spandrel
        return spandrel


@dataclass(frozen=True)
class Family:
    """One allowed architecture family: spandrel's id, its licence, and where the defense hooks by default."""

    arch_id: str
    title: str
    licence: str
    upstream: str
    default_layer: str  # regex: the last hookable layer whose name matches it (the end of the body)
    early_layer: str  # regex: an early body stage (the sweep's cheap hook point, like our U-Net's enc2)
    stages: str  # regex: the body's stages from input to output, every hook point the search tries


OWN = Family("UNetTeacher", "U-Net (ASVP Lab)", "MIT", "this repository", r"dec1", r"enc2",
             r"enc1|enc2|mid|dec2|dec1")  # our own, config.json layout
FAMILIES: dict[str, Family] = {f.arch_id: f for f in (
    Family("Compact", "Real-ESRGAN Compact (SRVGGNet)", "BSD-3-Clause", "github.com/xinntao/Real-ESRGAN",
           r"body\.\d*[13579]", r"body\.5",  # the activations between convs: the last, and the third
           r"body\.(1|5|13|19|25)"),  # activations from the first to the last, the early one among them
    Family("ESRGAN", "ESRGAN / Real-ESRGAN (RRDBNet)", "Apache-2.0 (ESRGAN), BSD-3-Clause (Real-ESRGAN)",
           "github.com/xinntao/ESRGAN", r"model\.1", r"model\.1\.sub\.0",  # the RRDB trunk; its first block
           r"model\.1\.sub\.(0|5|11|17)|model\.1"),
    Family("SwinIR", "SwinIR", "Apache-2.0", "github.com/JingyunLiang/SwinIR", r"conv_after_body", r"layers\.0\.conv",
           r"layers\.\d+\.conv|conv_after_body"),  # each residual Swin group's closing conv, then the body's
    Family("NAFNet", "NAFNet", "MIT", "github.com/megvii-research/NAFNet", r"decoders\.\d+", r"encoders\.1",
           r"encoders\.\d+|middle_blks|decoders\.\d+"),
    Family("RetinexFormer", "RetinexFormer", "MIT", "github.com/caiyuanhao1998/Retinexformer",
           r"body\.\d+\.denoiser\.decoder_layers\.\d+", r"body\.0\.denoiser\.encoder_layers\.1\.0",
           r"body\.\d+\.denoiser\.(encoder_layers\.\d+\.0|bottleneck|decoder_layers\.\d+\.2)"),
)}
# detected by spandrel but not loaded here, with the reason shown to the user
NOT_ALLOWED = {"SPAN": "its upstream repository states no licence", "SCUNet": "its upstream repository states no licence"}
NOT_ALLOWED_REASON = "not on the lab's list of permissively licensed families"


def allowed_registry():
    """A spandrel registry holding only the allowed families."""
    spandrel = import_spandrel()
    registry = spandrel.ArchRegistry()
    registry.add(*(spandrel.MAIN_REGISTRY[arch_id] for arch_id in FAMILIES))
    return registry


def detect(state_dict: dict) -> str | None:
    """spandrel's id of the architecture a (canonical) state dict belongs to, in spandrel's own
    detection order over every family it knows; None when none matches."""
    spandrel = import_spandrel()
    return next((a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(state_dict)),
                None)
