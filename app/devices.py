"""Where training runs: every command that trains or sweeps takes `--device auto|cpu|cuda`, and the
app (whose Distill click trains) reads the same choice from the ASVP_DEVICE environment variable.

`auto` takes CUDA when PyTorch sees a GPU, else the CPU; asking for CUDA where there is none falls
back to the CPU with a note rather than failing a long run at its first step.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache

import torch


CHOICES = ("auto", "cpu", "cuda")
APP_VARIABLE = "ASVP_DEVICE"


def pick_device(requested: str = "auto") -> tuple[torch.device, str]:
    """The device to use, and a note for the user when the request could not be met."""
    if requested not in CHOICES:
        raise ValueError(f"unknown device {requested!r}; choose one of {', '.join(CHOICES)}")
    if requested != "cpu" and torch.cuda.is_available():
        return torch.device("cuda"), ""
    note = "" if requested != "cuda" else "CUDA was asked for, but PyTorch sees no GPU here: running on the CPU"
    return torch.device("cpu"), note


def app_device() -> tuple[torch.device, str]:
    """The app's device from ASVP_DEVICE (`auto` when unset), and a note for its visitors when the
    request could not be met; an unknown value starts the server on `auto` and says so (a Space's
    setting should not keep it from starting)."""
    requested = os.environ.get(APP_VARIABLE, "auto").strip().lower() or "auto"
    if requested in CHOICES:
        return pick_device(requested)
    device, _ = pick_device("auto")
    where = "the CPU" if device.type == "cpu" else device.type.upper()
    return device, f"{APP_VARIABLE}={requested!r} is not one of {', '.join(CHOICES)}: running on {where}"


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model's weights live on (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@lru_cache(maxsize=1)
def machine() -> str:
    """This machine's kind, as the alias file states it (another kind rounds floats otherwise); read once (every
    filed teacher pass is keyed by it)."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or platform.machine()) if platform.system() == "Linux" else platform.processor()
    return f"{model}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"
