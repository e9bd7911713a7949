"""torch's global generator is every thread's: a student seeds it and draws its initial weights, and a
teacher built meanwhile in another thread (a visitor loading one) would draw from the same stream and give
that student other weights than its twin's. Whatever draws from it in the app does so here, in turn."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch


GLOBAL_DRAWS = threading.Lock()  # held to seed it and draw (a student's initial weights from its seed)


@contextmanager
def drawn_aside():
    """Build a network whose random initial weights are overwritten anyway (a teacher about to load its
    checkpoint): in turn with the students, and leaving the global generator's state as it found it."""
    with GLOBAL_DRAWS, torch.random.fork_rng(devices=[]):
        yield
