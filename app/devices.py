"""Where training runs: every command that trains or sweeps takes `--device auto|cpu|cuda`.

`auto` takes CUDA when PyTorch sees a GPU, else the CPU; asking for CUDA where there is none falls
back to the CPU with a note rather than failing a long run at its first step.
"""
from __future__ import annotations

import torch

CHOICES = ("auto", "cpu", "cuda")


def pick_device(requested: str = "auto") -> tuple[torch.device, str]:
    """The device to use, and a note for the user when the request could not be met."""
    if requested not in CHOICES:
        raise ValueError(f"unknown device {requested!r}; choose one of {', '.join(CHOICES)}")
    if requested != "cpu" and torch.cuda.is_available():
        return torch.device("cuda"), ""
    note = "" if requested != "cuda" else "CUDA was asked for, but PyTorch sees no GPU here: running on the CPU"
    return torch.device("cpu"), note


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model's weights live on (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device
