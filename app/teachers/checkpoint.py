"""Read a bare checkpoint of a field architecture (SwinIR, NAFNet, ...), untrusted.

A safetensors file's header is read and checked first (tensor types, shapes, parameter count),
before a byte of weights: building SwinIR or HAT on the meta device fails, the header never does. A
pickle (`.pth`, `.pt`, `.ckpt`) goes through torch's safe unpickler (`weights_only=True`: tensors and
plain containers only, so no code in it runs), memory-mapped, and its tensors get the same checks.
Then spandrel names the architecture from the state dict's keys and shapes, and only an allowed
family with finite weights is built.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from app.teachers.families import (FAMILIES, NOT_ALLOWED, NOT_ALLOWED_REASON, Family, allowed_registry, detect,
                                   import_spandrel)
from app.teachers.seeding import drawn_aside


MAX_PARAMS = 20_000_000  # 80 MB in float32: Real-ESRGAN x4plus (16.7M) fits, HAT-L (40.8M) does not
MAX_HEADER_BYTES = 2**22
WEIGHT_DTYPES = ("F32", "F16", "BF16")  # what a restoration checkpoint holds; ints are quantised models
# ...except the window transformers' (SwinIR, HAT) integer lookup table of relative positions
INDEX_BUFFERS, INDEX_DTYPES = ("relative_position_index",), {"I64", "I32"}
PICKLE_CHECKPOINTS = (".pth", ".pt", ".ckpt")  # read through torch's safe unpickler
WRAPPERS = ("params_ema", "params", "state_dict", "model")  # where training code nests the weights, first found wins
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
               torch.int64: "I64", torch.int32: "I32"}
CONVERT = ("To convert a checkpoint you trust, on your own machine (loading a pickle runs its code): "
           "python -c \"import torch; from safetensors.torch import save_file; "
           "sd = torch.load('model.pth', map_location='cpu', weights_only=False); "
           "save_file({k: v.contiguous() for k, v in sd.get('params_ema', sd).items()}, 'model.safetensors')\"")


class TeacherLoadError(ValueError):
    """A teacher source that cannot be used; the message is meant for the user."""


def header(path: Path, origin: str) -> dict[str, dict]:
    """The tensor table of a safetensors file, checked against its size: {name: {dtype, shape}}."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise TeacherLoadError(f"{path.name} of {origin} is not a safetensors file (no valid header)")
        try:
            table = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TeacherLoadError(f"{path.name} of {origin} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(table, dict):
        raise TeacherLoadError(f"{path.name} of {origin} is not a safetensors file (its header is not a table)")
    table.pop("__metadata__", None)
    for name, info in table.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise TeacherLoadError(f"{path.name} of {origin}: tensor {name!r} has no valid shape")
    return table


def check_tensors(table: dict[str, dict], origin: str) -> None:
    """Refuse other number types, and models with too many values (parameters and buffers: all the
    header can tell)."""
    if odd := sorted({info.get("dtype") for name, info in table.items()
                      if not (name.endswith(INDEX_BUFFERS) and info.get("dtype") in INDEX_DTYPES)}
                     - set(WEIGHT_DTYPES), key=str):
        raise TeacherLoadError(f"the weights of {origin} hold {', '.join(map(str, odd))} tensors; a restoration "
                               f"teacher is stored as {', '.join(WEIGHT_DTYPES)}")
    params = sum(math.prod(info["shape"]) for info in table.values())
    if params > MAX_PARAMS:
        raise TeacherLoadError(f"the weights of {origin} hold {params:,} parameters; the limit is {MAX_PARAMS:,}")


class SizeRule(nn.Module):
    """A field network with its input size rule (spandrel's SizeRequirements) applied: pad to the
    rule (replicating the border), run, crop the output back to `net_scale` x the input. A `scale`
    other than the network's resizes its answer (bicubic), as the ncnn graphs of Real-ESRGAN's x2 and x3
    models do after their x4 network. The network's own layers sit under `net.`."""

    def __init__(self, net: nn.Module, net_scale: int, rule, scale: int | None = None):
        super().__init__()
        self.net, self.net_scale, self.rule = net, net_scale, rule
        self.scale = scale or net_scale

    def forward(self, x):
        h, w = x.shape[-2:]
        pw, ph = self.rule.get_padding(w, h)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = self.net(x)[..., : h * self.net_scale, : w * self.net_scale]
        if self.scale != self.net_scale:
            out = F.interpolate(out, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
        return out


@dataclass
class Checkpoint:
    model: SizeRule  # in eval mode, float32
    family: Family
    params: int  # trainable parameters of the built model


def unpickled_weights(path: Path, origin: str) -> dict[str, torch.Tensor]:
    """The tensors of a pickled checkpoint, through torch's safe unpickler (memory-mapped), unwrapped
    from the usual training wrappers; anything else it holds (step counters, optimiser names) is left."""
    try:
        try:
            found = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            found = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped
    except Exception as e:  # noqa: BLE001 - an untrusted file may fail the unpickler in any way: all refuse it
        reason = " ".join(str(e).split())[:160]
        raise TeacherLoadError(f"{path.name} of {origin} was refused by the safe unpickler, which reads tensors and "
                               f"plain containers only ({type(e).__name__}: {reason}). {CONVERT}") from None
    for key in WRAPPERS:
        if isinstance(found, dict) and isinstance(found.get(key), dict):
            found = found[key]
            break
    weights = {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, torch.Tensor)} \
        if isinstance(found, dict) else {}
    if not weights:
        raise TeacherLoadError(f"{path.name} of {origin} holds no state dict of named tensors (looked under "
                               f"{', '.join(WRAPPERS)} too)")
    check_tensors({k: {"dtype": DTYPE_NAMES.get(v.dtype, str(v.dtype)), "shape": list(v.shape)}
                   for k, v in weights.items()}, origin)
    return weights


def safetensors_weights(path: Path, origin: str) -> dict[str, torch.Tensor]:
    check_tensors(header(path, origin), origin)
    try:
        return load_file(path)
    except SafetensorError as e:
        raise TeacherLoadError(f"{path.name} of {origin} is not a valid safetensors file: {e}") from None


def read_checkpoint(path: Path, origin: str, scale: int | None = None) -> Checkpoint:
    """Check, detect and build a checkpoint of an allowed family (safetensors, or a pickle through the
    safe unpickler); `scale`: the one to serve where it is not the network's own (SizeRule)."""
    pickled = path.suffix.lower() in PICKLE_CHECKPOINTS
    weights = unpickled_weights(path, origin) if pickled else safetensors_weights(path, origin)
    try:
        spandrel = import_spandrel()
    except ModuleNotFoundError:
        raise TeacherLoadError("field architectures need spandrel: pip install --no-deps -r requirements-nodeps.txt") \
            from None
    if bad := [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise TeacherLoadError(f"the weights of {origin} hold values that are not finite (NaN or infinity), in "
                               f"{len(bad)} tensor(s) such as {bad[0][:60]!r}")
    state = spandrel.canonicalize_state_dict({k: v if k.endswith(INDEX_BUFFERS) else v.float()
                                              for k, v in weights.items()})
    arch = detect(state)
    if arch is None:
        raise TeacherLoadError(f"the weights of {origin} match no architecture the lab knows (allowed: "
                               f"{', '.join(f.title for f in FAMILIES.values())})")
    if arch not in FAMILIES:
        raise TeacherLoadError(f"the weights of {origin} are a {arch} network, which the lab does not load: "
                               f"{NOT_ALLOWED.get(arch, NOT_ALLOWED_REASON)}. Allowed: "
                               f"{', '.join(f.title for f in FAMILIES.values())}")
    try:
        with drawn_aside():  # spandrel builds the network (random init) before it loads the weights
            descriptor = spandrel.ModelLoader(registry=allowed_registry()).load_from_state_dict(state)
    except Exception as e:  # noqa: BLE001 - spandrel raises many kinds on inconsistent shapes
        detail = " ".join(str(e).split())[:200]
        raise TeacherLoadError(f"the weights of {origin} look like {arch} but do not load: {detail}") from None
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise TeacherLoadError(f"{origin} maps {descriptor.input_channels} to {descriptor.output_channels} channels; "
                               "the lab restores RGB images (3 -> 3)")
    rule = descriptor.size_requirements
    if rule.square:
        raise TeacherLoadError(f"{origin} needs square inputs, which the lab does not support")
    model = SizeRule(descriptor.model, descriptor.scale, rule, scale)
    return Checkpoint(model.eval(), FAMILIES[arch], sum(p.numel() for p in model.parameters()))
