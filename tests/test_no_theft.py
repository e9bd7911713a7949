"""The thief who steals nothing: the same student, queries, initial weights, batch order and budget,
fitted to the clean patches the attacker degraded its queries from, never to a teacher's answer."""
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from helpers import SMALL_RUN, weights

from app.attack import distill as distill_module
from app.attack.attackers import attack_for, attacker
from app.attack.distill import distill, no_theft, query_pairs
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.teachers.loader import load_teacher


def refusing_teacher(*args, **kwargs):
    raise AssertionError("the no-theft student asked a teacher")


@pytest.mark.parametrize("task", ["dehaze", "sr_x2"])
def test_the_no_theft_student_never_asks_a_teacher_and_equals_itself(monkeypatch, task):
    attack = dataclasses.replace(attack_for(task), **SMALL_RUN)
    monkeypatch.setattr(distill_module, "ask_teacher", refusing_teacher)
    first, again = (list(no_theft(TASKS[task], attack, [3, 4], every=3)) for _ in range(2))
    assert [e.step for e in first] == [0, 3, 6] and len(first[-1].students) == 2
    for a, b in zip(first[-1].students, again[-1].students):
        assert torch.equal(weights(a), weights(b))
    assert not torch.equal(weights(first[-1].students[0]), weights(first[-1].students[1]))  # a seed each


def test_it_starts_where_the_clean_taught_student_starts_and_fits_the_clean_patches():
    task, attack = TASKS["dehaze"], dataclasses.replace(attack_for("dehaze"), **SMALL_RUN)
    stolen = next(distill(load_teacher("dehaze").model, task, [(Setting(layers=("dec1",)).clean, 5)], attack))
    mine = list(no_theft(task, dataclasses.replace(attack, steps=40), [5], every=1))
    assert torch.equal(weights(mine[0].students[0]), weights(stolen.students[0]))  # same initial weights
    x, y = query_pairs(task, attack.queries, attack.patch, attack.variants, 5)
    assert y.shape[-1] == x.shape[-1] * task.scale and not torch.equal(x, y)
    losses = [e.losses[0] for e in mine[1:]]
    assert sum(losses[-10:]) < sum(losses[:10])  # it learns the clean patches


def test_a_feature_thief_without_a_teacher_fits_the_outputs_with_its_own_pixel_loss():
    base = dataclasses.replace(attack_for("derain"), **SMALL_RUN)
    fitnet, output = attacker(base, "FitNet MSE"), attacker(base, "output L2")
    a, b = (list(no_theft(TASKS["derain"], attack, [6]))[-1].students[0] for attack in (fitnet, output))
    assert torch.equal(weights(a), weights(b))


class SlowPupil(distill_module.Pupil):
    """A student whose making pauses between the seeding and the drawing: another thread gets its chance."""

    def __init__(self, *args, **kwargs):
        time.sleep(0.01)
        super().__init__(*args, **kwargs)


def test_students_made_at_once_in_several_threads_are_the_students_made_alone(monkeypatch):
    """torch's global generator is shared by every thread: clicks, twins and background students seed it and
    draw their weights in turn, so a visitor's student never depends on what another thread does meanwhile."""
    monkeypatch.setattr(distill_module, "Pupil", SlowPupil)
    attack, seeds = dataclasses.replace(attack_for("dehaze"), **{**SMALL_RUN, "steps": 1}), range(20, 28)
    start = threading.Barrier(len(seeds))

    def made(seed):
        start.wait()
        return list(no_theft(TASKS["dehaze"], attack, [seed], every=1))[0].students[0]

    with ThreadPoolExecutor(len(seeds)) as threads:
        together = list(threads.map(made, seeds))
    for seed, student in zip(seeds, together):
        alone_made = list(no_theft(TASKS["dehaze"], attack, [seed], every=1))[0].students[0]
        assert torch.equal(weights(student), weights(alone_made))
