"""A long training run filed as it goes: a field student trains 10,000 steps (about half an hour of a core), and a
search stopped part way (a session's end, a machine handed back) would otherwise start it over. Every `every`
steps the run's whole state is filed: the students' weights, the optimiser's moments, the schedule and each
student's batch order. A run given the same file goes on from there, and ends with the student the whole run would
have made, bit for bit (tests/test_resume.py). What the file is keyed by (the run's data, its attacker, the code's
numbers) is the caller's to say (app.study.resumes).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Resumable:
    """Where a run files its state, and every how many steps."""

    path: Path
    every: int = 500


def resumed(at: Resumable, params: list[tuple[str, torch.Tensor]], opt: torch.optim.Optimizer, sched,
            orders: list[torch.Generator], steps: int) -> int:
    """The step the run filed at `at` reached, its state loaded into `params` (in place: the optimiser holds them),
    `opt`, `sched` and the batch `orders`; 0, loading nothing, where no state is filed, or one of another run (its
    budget or its students' shapes differ) or a file cut short."""
    try:
        state = torch.load(at.path, weights_only=True)
    except FileNotFoundError:
        return 0
    except (RuntimeError, EOFError, pickle.UnpicklingError):  # cut short by a stop while it was written
        return 0
    shapes = [tuple(p.shape) for _, p in params]
    if (state.get("steps") != steps or [tuple(p.shape) for p in state["params"]] != shapes
            or len(state["orders"]) != len(orders)):
        return 0
    with torch.no_grad():
        for (_, p), filed in zip(params, state["params"]):
            p.copy_(filed)
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    for order, filed in zip(orders, state["orders"]):
        order.set_state(filed)
    return state["now"]


def file_state(at: Resumable, now: int, steps: int, params: list[tuple[str, torch.Tensor]],
               opt: torch.optim.Optimizer, sched, orders: list[torch.Generator]) -> None:
    """File the run's state after step `now` of `steps` at `at` (written aside, then moved in place: a stop while
    it is written leaves the last filing whole). A full disk only costs the run its resumption."""
    at.path.parent.mkdir(parents=True, exist_ok=True)
    partial = at.path.with_name(f"{at.path.name}.{os.getpid()}.partial")
    try:
        torch.save(dict(now=now, steps=steps, params=[p.detach() for _, p in params], opt=opt.state_dict(),
                        sched=sched.state_dict(), orders=[order.get_state() for order in orders]), partial)
        partial.replace(at.path)
    except OSError:
        partial.unlink(missing_ok=True)
