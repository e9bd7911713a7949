"""Students spread over the CPU's cores.

A quick student's convolutions are too thin for two cores to share one well: on 2 cores, students
each on one core train 1.5-1.7x faster at their budget than the same students one after another on
both (`python -m app.bench`). So on a CPU every run gets a pass of its own (`app.attack.distill` with one run),
and a pool of single-threaded workers, one per core, advances the passes an event at a time: the
students of one Distill click, and those of concurrent visitors, share the cores evenly, and none
waits for another to finish. The teacher answers in the caller's thread, on all its cores, one run
after another (a teacher's hooks belong to one forward at a time). A background pass (the student that
steals nothing, shown once trained) steps only while nothing a visitor waits for is under way (`busy`: a
click, a teacher's turn, another pass), so it never slows one.
"""
from __future__ import annotations

import importlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import torch

from app.attack.distill import Progress, distill
from app.devices import device_of


_pool: ThreadPoolExecutor | None = None
_making = threading.Lock()
_stepping = 0  # work a visitor waits for under way (`busy`)
_counting = threading.Lock()
BACKGROUND_WAIT_S = 0.05  # how often a background pass looks whether the cores are free


def core_pool() -> ThreadPoolExecutor:
    """One single-threaded worker per intra-op thread of this process, made on first use.

    torch.set_num_threads acts per thread on the work (OpenMP's thread count is per thread), but
    also stores a process-wide count that a thread takes at its first parallel op: every worker
    takes it, then sets its own, then the count is put back for the rest of the process."""
    global _pool
    with _making:
        if _pool is None:
            cores = torch.get_num_threads()
            ready = threading.Barrier(cores + 1)

            def single_threaded():
                torch.get_num_threads()  # the first parallel op's set-up, here, not after the count is back
                torch.set_num_threads(1)
                ready.wait()

            pool = ThreadPoolExecutor(cores, thread_name_prefix="student", initializer=single_threaded)
            for _ in range(cores):  # a busy worker makes the next submit start another: all of them start
                pool.submit(int)
            ready.wait()
            torch.set_num_threads(cores)
            _pool = pool
    return _pool


def prepare_students() -> None:
    """Import what a student's first optimiser imports lazily (torch._dynamo, through torch.optim's
    compile guards: about a second on 2 cores), so that a caller can pay it while the attacker's
    queries are made rather than as a silent pause in the first Distill click of a process."""
    importlib.import_module("torch._dynamo")


def distill_on_cores(teacher, task, runs, attack, every: int = 10) -> Iterator[Progress]:
    """`app.attack.distill.distill`'s progress for the same runs, each student on one core of a CPU (one
    pass of all runs where that gains nothing: on an accelerator, for one run, or on one core)."""
    if len(runs) < 2 or not shares_cores(teacher):
        yield from distill(teacher, task, runs, attack, every)
        return
    passes = [distill(teacher, task, [run], attack, every) for run in runs]
    events = [next(one) for one in passes]  # the teacher answers, here, on every core
    pool = core_pool()
    with busy():
        while events[0] is not None:  # every pass yields at the same steps
            yield Progress(events[0].step, events[0].total, [x for e in events for x in e.losses],
                           [x for e in events for x in e.feature_losses], [x for e in events for x in e.students])
            events = [job.result() for job in [pool.submit(next, one, None) for one in passes]]


def on_cores(one: Iterator[Progress], background: bool = False) -> Iterator[Progress]:
    """The rest of one pass's events, each computed by a single-threaded core worker (the caller only
    waits): a student that trains beside another, on a core of its own, as `distill_on_cores` trains it.
    A `background` pass submits its next event only while nothing a visitor waits for is under way."""
    pool = core_pool()
    with busy(not background):
        while True:
            if background:
                _wait_for_idle()
            if (event := pool.submit(next, one, None).result()) is None:
                return
            yield event


def in_background(one: Iterator[Progress]) -> Iterator[Progress]:
    """The rest of one pass's events, computed in the caller's thread, each once nothing a visitor waits for is
    under way (a background pass where its students get no core of their own)."""
    while True:
        _wait_for_idle()
        if (event := next(one, None)) is None:
            return
        yield event


def _wait_for_idle() -> None:
    while _stepping:
        time.sleep(BACKGROUND_WAIT_S)


@contextmanager
def busy(counted: bool = True):
    """Count work a visitor waits for (a click, a teacher's turn, a student beside another) as under way until
    it ends or is dropped: background passes wait for none to be."""
    global _stepping
    with _counting:
        _stepping += counted
    try:
        yield
    finally:
        with _counting:
            _stepping -= counted


def shares_cores(teacher) -> bool:
    """Whether students beside each other get a core each here (a CPU with more than one)."""
    return device_of(teacher).type == "cpu" and torch.get_num_threads() > 1
