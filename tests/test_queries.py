"""The attacker's queries, made while a visitor looks: the Distill click that follows waits for
that one build (never a second), and a build that fails says so at the click, not at the look."""
import dataclasses
import subprocess
import sys
import threading

import pytest
from gradio_client import handle_file
from helpers import COFFEE, ROOT

from app.attack.attackers import attack_for
from app.data.tasks import TASKS
from app.lab import duels
from app.lab.presets import preset
from app.teachers.budget import Cost


@pytest.fixture
def recorded_builds(monkeypatch):
    """Query builds replaced by a recorder that holds each build until `release` is set."""
    calls, release = [], threading.Event()

    def build(task, attack, seed):
        calls.append((task.name, seed))
        release.wait(10)
        return "queries"

    monkeypatch.setattr(duels, "attacker_queries", build)
    monkeypatch.setattr(duels, "prepare_students", lambda: None)  # its first import would outlast the heartbeats
    monkeypatch.setattr(duels, "HEARTBEAT_S", 0.01)
    yield calls, release
    release.set()


def test_the_click_waits_for_the_build_a_look_started(recorded_builds):
    calls, release = recorded_builds
    task, attack = TASKS["dehaze"], attack_for("dehaze")
    started = duels.start_queries(task, attack, 101)
    waiting = duels.queries_ready(task, attack, 101)
    assert next(waiting) is None  # a heartbeat while the look's build runs
    assert duels.start_queries(task, attack, 101) is started
    release.set()
    assert list(waiting) == [] and started.result() == "queries"
    assert calls == [("dehaze", 101)]


def test_another_seed_is_another_build(recorded_builds):
    calls, release = recorded_builds
    release.set()
    task, attack = TASKS["derain"], attack_for("derain")
    for seed in (102, 103):
        list(duels.queries_ready(task, attack, seed))
    assert calls == [("derain", 102), ("derain", 103)]


def test_a_failed_build_surfaces_at_the_click(monkeypatch):
    def broken(task, attack, seed):
        raise ValueError("no attacker images for this task")

    monkeypatch.setattr(duels, "attacker_queries", broken)
    task, attack = TASKS["lowlight"], attack_for("lowlight")
    duels.start_queries(task, attack, 104)  # the look goes on
    with pytest.raises(ValueError, match="no attacker images"):
        list(duels.queries_ready(task, attack, 104))


def test_a_look_in_the_app_starts_the_queries_of_its_seed(client, recorded_builds):
    calls, _ = recorded_builds
    client.predict(task="underwater", image=handle_file(str(COFFEE)), already_degraded=False, seed=105,
                   **preset("underwater").defense.controls(), api_name="/look")
    assert ("underwater", 105) in calls



def loads_dynamo(setup: str, statement: str) -> tuple[bool, bool]:
    """Whether torch._dynamo is loaded in a fresh interpreter after `setup`, and after `statement`."""
    code = (f"import sys; {setup}; before = 'torch._dynamo' in sys.modules; {statement}; "
            "print(before, 'torch._dynamo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return tuple(word == "True" for word in run.stdout.split()[-2:])


def test_the_build_also_makes_the_imports_a_students_first_optimiser_would():
    """torch.optim's first Adam imports torch._dynamo (about a second on 2 cores): the look's build
    pays for it, not a silent pause in the first Distill click of a fresh server."""
    assert loads_dynamo("import dataclasses; from app.lab import duels; from app.attack.attackers import attack_for; "
                        "from app.data.tasks import TASKS",
                        "duels.start_queries(TASKS['dehaze'], dataclasses.replace(attack_for('dehaze'), queries=8), "
                        "106).result()") == (False, True)  # a few queries: the imports are the point


def test_a_first_optimiser_does_import_torch_dynamo():
    """The premise of the build's extra import: when a torch release stops importing it lazily here,
    this fails and app.attack.cores.prepare_students can go."""
    assert loads_dynamo("import torch", "torch.optim.Adam([torch.zeros(1, requires_grad=True)])") == (False, True)


@pytest.mark.parametrize("seconds_per_pixel,queries", [(None, 96), (1e-6, 96), (2.5e-4, 12), (1.0, 8)])
def test_a_slow_teacher_answers_fewer_queries_never_fewer_than_a_batch(seconds_per_pixel, queries):
    """A 48 px query at 2.5e-4 s a pixel takes 0.58 s: 12 of them fit the 7 s a click may spend answering
    one student's queries."""
    attack = attack_for("sr_real_x4")
    cost = None if seconds_per_pixel is None else Cost(88, 0.1, 1.0, 2 * 2 * seconds_per_pixel * 88 ** 2)
    assert duels.fitted_queries(attack, cost).queries == queries
    if queries < attack.queries:  # the rest of the attacker as it was
        assert dataclasses.replace(duels.fitted_queries(attack, cost), queries=attack.queries) == attack
