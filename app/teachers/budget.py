"""What a teacher costs to serve, measured before it serves anyone.

A checkpoint's size says little about its cost: the hyper-parameters read from its weights (window
size, heads, width) set what a forward holds and computes. So the cost is measured: one forward at the
largest upload on the `meta` device (no memory, no arithmetic) gives the peak of the tensors alive and
the floating-point operations; two real forwards at small sizes, timed, turn operations into seconds
on this machine (their difference, so that a small forward's fixed overhead is not scaled up). A look
runs the teacher twice at the upload's size; a model too slow for the largest upload serves smaller images
(its uploads are downscaled further), and one over the budget even so is refused at load, with what it
would cost.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from app.data.images import MAX_SIDE


GB = 1e9
CALIBRATION_SHARES = (4, 2)  # the timed real forwards run at 1/4 and 1/2 of the side: their difference is the
# marginal cost, and half the side is large enough that memory traffic, not call overhead, sets it
# real looks of attention teachers took up to about 3x the extrapolation from the smaller forwards;
# doubled, the estimate measured 0.65x to 1.9x the real look (`python -m app.bench` prints it for three
# families): near the limit, a look may still run over it by a third
SAFETY = 2.0
FASTEST_FLOPS = 1e12  # no CPU serving this lab computes faster: past this bound a model is refused untried
MIN_SERVED_SIDE = 256  # px out: a teacher too slow for the largest upload serves images down to this side


@dataclass(frozen=True)
class Budget:
    """The most a look may cost at the largest upload: memory beyond the server's, and seconds."""

    extra_gb: float = 1.5
    look_s: float = 10.0


APP_BUDGET = Budget()


@dataclass(frozen=True)
class Cost:
    """A teacher's cost for a look at the largest image it serves (`side` px input): the largest upload,
    or for a teacher too slow for that one, a smaller side that fits the time budget."""

    side: int
    peak_gb: float  # the weights and the tensors alive at a forward's peak
    gflop: float  # one forward
    look_s: float  # two forwards, on this machine
    timed: bool = True  # False: refused untried, and look_s is the least any CPU here would take
    upload_look_s: float = 0.0  # where it serves smaller images: a look at the largest upload, on this machine

    @property
    def serves_less(self) -> bool:
        return self.upload_look_s > 0

    @property
    def seconds_per_pixel(self) -> float:
        """One forward's time per input pixel here, as measured (the look's safety factor taken out)."""
        return self.look_s / SAFETY / 2 / self.side ** 2

    def refusal(self, budget: Budget) -> str:
        """Why the teacher may not serve under `budget` (empty when it may)."""
        size = (f"even a look at the smallest side it may serve ({self.side} x {self.side} px in)" if self.serves_less
                else f"a look at the largest upload ({self.side} x {self.side} px in)")
        if self.peak_gb > budget.extra_gb:
            return f"{size} would hold {self.peak_gb:.1f} GB; the limit is {budget.extra_gb:g} GB"
        if self.look_s > budget.look_s:
            return f"{size} would take {'about' if self.timed else 'at least'} {self.look_s:.0f} s here " \
                   f"({self.gflop:.0f} GFLOP a forward); the limit is {budget.look_s:g} s"
        return ""


class LiveTensors(TorchDispatchMode):
    """The peak bytes of the tensors alive while it is on (each op's new outputs, until freed)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        inputs = {id(t) for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t) not in inputs:  # in-place ops return an input
                size = t.numel() * t.element_size()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._freed, size)
        return out

    def _freed(self, size: int) -> None:
        self.live -= size


@torch.no_grad()
def on_meta(model: nn.Module, side: int) -> tuple[int, float]:
    """(peak bytes alive, FLOPs) of one forward of a side x side image, with nothing computed."""
    meta = copy.deepcopy(model).to("meta")
    live, flops = LiveTensors(), FlopCounterMode(display=False)
    with torch.device("meta"), flops, live:  # tensors a forward makes without a device (masks) stay empty too
        meta(torch.empty(1, 3, side, side))
    return live.peak, flops.get_total_flops()


@torch.no_grad()
def seconds(model: nn.Module, side: int) -> float:
    """The faster of two timed forwards of a side x side image, where the model runs."""
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model: nn.Module, scale: int, budget: Budget = APP_BUDGET) -> Cost:
    """The cost of a look at the largest upload; for a teacher within the memory budget there but too slow,
    the cost at the largest side (a multiple of 4 px in, down to MIN_SERVED_SIDE px out) whose look fits the
    time budget. A model over `budget` on the meta device alone (its memory, or operations no CPU here gets
    through in time at the smallest side) is never run for real."""
    side, smallest = MAX_SIDE // scale, MIN_SERVED_SIDE // scale
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    peak, flops = on_meta(model, side)
    cost = Cost(side, (weights + peak) / GB, flops / 1e9, 2 * flops / FASTEST_FLOPS, timed=False)
    if cost.peak_gb > budget.extra_gb or 2 * on_meta(model, smallest)[1] / FASTEST_FLOPS > budget.look_s:
        return cost
    sides = [max(16, side // share) for share in CALIBRATION_SHARES]
    (f1, f2), (t1, t2) = zip(*[(on_meta(model, n)[1], seconds(model, n)) for n in sides])

    def look_s(n: int) -> float:
        """Two forwards of an n x n image here, with the safety factor."""
        if f2 > f1:
            per_flop = max((t2 - t1) / (f2 - f1), 0.25 * t2 / f2)  # timing noise never makes work free
            return SAFETY * 2 * (t1 + per_flop * (on_meta(model, n)[1] - f1))
        return SAFETY * 2 * t2 * (n / sides[1]) ** 2  # no counted operation grows with the image: scale by pixels

    cost = dataclasses.replace(cost, look_s=look_s(side), timed=True)
    if cost.look_s <= budget.look_s:
        return cost
    served = max(smallest, 4 * int(side * (budget.look_s / cost.look_s) ** 0.5 / 4))  # looks grow with pixels
    while served > smallest and look_s(served) > budget.look_s:
        served -= 4
    served_peak, served_flops = on_meta(model, served)
    return Cost(served, (weights + served_peak) / GB, served_flops / 1e9, look_s(served),
                upload_look_s=cost.look_s)
