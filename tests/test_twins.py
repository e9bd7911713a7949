"""The clean-taught twin of a Distill click: trained once per teacher, attacker, seed and (for a thief who
reads features) hooked layers, started by a look, reused by every later click, and the student a click
would have trained."""
import dataclasses
import gc
import threading
import time
import weakref

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from helpers import COFFEE, SMALL_RUN

from app.attack.attackers import attack_for
from app.attack.cores import busy
from app.attack.distill import alone, asked, distill, no_theft, taught
from app.data.images import load_rgb
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.lab import duels, scenes, twins
from app.lab.presets import preset
from app.study.recipe import one_thread
from app.teachers.networks import UNetTeacher, restore
from app.teachers.sessions import shared_teacher
from app.ui.texts import score_rows


ATTACK = dataclasses.replace(attack_for("dehaze"), **SMALL_RUN)
SCENE = scenes.make_scene(TASKS["dehaze"], load_rgb(COFFEE)[:48, :48], False, 0)


@pytest.fixture
def counted(monkeypatch):
    """The twins' training, counted (each call trains one clean-taught student)."""
    calls = []

    def counting(teacher, task, defense, attack, seed):
        calls.append((defense, seed))  # its one run
        return asked(teacher, task, defense, attack, seed)

    monkeypatch.setattr(twins, "asked", counting)
    return calls


def fresh_teacher() -> UNetTeacher:
    torch.manual_seed(0)
    return UNetTeacher()


def test_a_later_click_at_another_setting_reuses_the_clean_taught_twin(counted):
    teacher = fresh_teacher()
    *_, first = duels.duel(teacher, SCENE, Setting(layers=("dec1",), k=1, a=3.0), ATTACK, seed=5)
    *_, later = duels.duel(teacher, SCENE, Setting(layers=("mid",), k=4, a=10.0, layout="spatial"), ATTACK, seed=5)
    assert len(counted) == 1  # an output thief's twin ignores the hooked layer too
    assert np.array_equal(first.students[0], later.students[0])
    assert not np.array_equal(first.students[1], later.students[1])  # the defended students differ
    *_, other_seed = duels.duel(teacher, SCENE, Setting(layers=("dec1",), k=1, a=3.0), ATTACK, seed=6)
    assert len(counted) == 2 and not np.array_equal(first.students[0], other_seed.students[0])


def test_a_feature_thief_has_a_twin_per_hooked_layer(counted):
    teacher, feature = fresh_teacher(), dataclasses.replace(ATTACK, kind="feature")
    for layer in ("dec1", "mid", "dec1"):
        list(duels.duel(teacher, SCENE, Setting(layers=(layer,), a=3.0), feature, seed=5))
    assert [run[0].layers for run in counted] == [("dec1",), ("mid",)]


def test_the_twin_is_the_clean_student_of_one_pass_beside_its_defended_one():
    teacher, defense = fresh_teacher(), Setting(layers=("dec1",), k=2, a=30.0)
    *_, last = duels.duel(teacher, SCENE, defense, ATTACK, seed=7)
    *_, one_pass = distill(teacher, TASKS["dehaze"], [(defense.clean, 7), (defense, 7)], ATTACK, every=ATTACK.steps)
    for shown, student in zip(last.students, one_pass.students):  # within float rounding: one core vs all
        np.testing.assert_allclose(shown, restore(student, SCENE.degraded), atol=2e-3)


@pytest.mark.parametrize("after", [0, 1])  # clicked while the twin trains, and once it has (its answers let go)
def test_an_exposed_click_shares_the_twins_answers_and_trains_the_student_its_own_pass_would(after):
    """The feature thief's defended answers are the twin's clean ones with their maps amplified: one teacher pass on
    the queries for both students, and the very student a pass of its own gives."""
    teacher, feature = fresh_teacher(), dataclasses.replace(ATTACK, kind="feature")
    defense = Setting(layers=("enc1", "dec1"), k=2, a=30.0, layout="spatial", placement="exposed")
    task, seed = TASKS["dehaze"], 11 + after
    if after:
        twins.clean_twin(teacher, task, defense.clean, feature, seed)[1].result()
    passes = []
    handle = teacher.register_forward_hook(lambda _m, _i, out: passes.append(out.shape[0]))
    try:
        *_, last = duels.duel(teacher, SCENE, defense, feature, seed)
    finally:
        handle.remove()
    assert passes.count(feature.queries) == 1  # the twin's alone, or (it trained before) the click's own
    with one_thread():  # as each student trains on a core (app.attack.cores)
        *_, own = taught(task, [asked(teacher, task, defense, feature, seed)], feature, every=feature.steps)
    assert np.array_equal(last.students[1], restore(own.students[0], SCENE.degraded))


def test_a_failed_twin_surfaces_at_the_click_and_is_tried_again(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while the twin trained")

    teacher = fresh_teacher()
    monkeypatch.setattr(twins, "taught", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(duels.duel(teacher, SCENE, Setting(layers=("dec1",), a=3.0), ATTACK, seed=8))
    monkeypatch.setattr(twins, "taught", taught)
    *_, last = duels.duel(teacher, SCENE, Setting(layers=("dec1",), a=3.0), ATTACK, seed=8)
    assert last.verdict is not None


def test_a_teacher_is_freed_with_its_twins():
    teacher, scene = fresh_teacher(), dataclasses.replace(SCENE)  # a scene keeps its last teacher's answers
    list(duels.duel(teacher, scene, Setting(layers=("dec1",), a=3.0), ATTACK, seed=9))
    gone = weakref.ref(teacher)
    assert twins._kept[teacher]  # kept while the teacher lives
    del teacher, scene
    gc.collect()
    assert gone() is None


def test_a_look_in_the_app_starts_the_twin_of_the_attacker_and_budget_shown(client):
    client.predict(task="derain", image=handle_file(str(COFFEE)), already_degraded=False, seed=109,
                   **preset("derain").defense.controls(), attacker=preset("derain").attacker, budget=30,
                   api_name="/look")
    teacher = shared_teacher("derain", torch.device("cpu"), None).loaded.model  # the app's
    attack = dataclasses.replace(preset("derain").attack, steps=30)
    key = twins.twin_key(TASKS["derain"], preset("derain").defense.clean, attack, 109)
    started = time.monotonic()
    while key not in twins._kept.get(teacher, {}) and time.monotonic() - started < 60:  # once the queries are made
        time.sleep(0.1)
    twin, job = twins._kept[teacher][key]
    assert job.result(timeout=120).student is not None and [step for step, _ in twin.history] == [5, 10, 15, 20, 25, 30]
    time.sleep(0.5)
    assert (TASKS["derain"].name, alone(attack), 109) not in twins._alone  # the no-theft student waits for a click


def test_the_no_theft_student_joins_the_table_once_trained_and_never_slows_a_click():
    teacher, defense = fresh_teacher(), Setting(layers=("dec1",), a=3.0)
    *_, first = duels.duel(teacher, SCENE, defense, ATTACK, seed=11)
    _, alone = twins.no_theft_twin(TASKS["dehaze"], ATTACK, 11)
    alone.result(timeout=60)
    *_, later = duels.duel(teacher, SCENE, defense, ATTACK, seed=11)
    assert later.scores.no_theft_ready and later.scores.no_theft is not None
    *_, direct = no_theft(TASKS["dehaze"], ATTACK, [11], every=ATTACK.steps)
    expected = restore(direct.students[0], SCENE.degraded)
    assert later.scores.no_theft.psnr == pytest.approx(scenes.reference_quality(expected, SCENE).psnr, abs=0.05)
    row = score_rows(later.scores)[5]
    assert row[0] == "student (no teacher: stole nothing)" and row[1] == f"{later.scores.no_theft.psnr:.2f}"
    assert row[3].startswith(f"{later.scores.no_theft.psnr - later.scores.clean_student.psnr:+.2f} dB")


@pytest.mark.parametrize("threads", [1, 2])  # students on cores of their own, or in their threads
def test_no_theft_students_waiting_for_the_cores_never_hold_up_a_clicks_twin(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    with busy():  # a visitor's work under way: background students wait
        seeds = range(40 + 10 * threads, 43 + 10 * threads)
        waiting = [twins.no_theft_twin(TASKS["dehaze"], ATTACK, seed)[1] for seed in seeds]
        *_, last = duels.duel(fresh_teacher(), SCENE, Setting(layers=("dec1",), a=3.0), ATTACK, seed=seeds[0])
        assert last.students is not None and not any(job.done() for job in waiting)
    for job in waiting:
        assert job.result(timeout=60).student is not None  # they train once the cores are free


def test_settling_the_background_drops_the_waiting_students_and_a_later_click_starts_them_again():
    twins.settle_background()  # none of another test's ahead of these
    with busy():  # a visitor's work under way: the first steps, the rest wait their turn
        jobs = [twins.no_theft_twin(TASKS["dehaze"], ATTACK, seed)[1] for seed in range(70, 73)]
        while not jobs[0].running():  # its thread has taken it (the rest stay queued)
            time.sleep(0.01)
        settling = threading.Thread(target=twins.settle_background)
        settling.start()
        time.sleep(0.2)
        assert settling.is_alive()  # the one under way is waited for
    settling.join(timeout=60)
    assert not settling.is_alive() and jobs[0].result().student is not None
    assert all(job.cancelled() for job in jobs[1:])
    assert all((TASKS["dehaze"].name, alone(ATTACK), seed) not in twins._alone for seed in (71, 72))
    twin, again = twins.no_theft_twin(TASKS["dehaze"], ATTACK, 71)
    assert again.result(timeout=60).student is not None and twin.history[-1][0] == ATTACK.steps


def test_a_click_keeps_reporting_while_the_teacher_answers_on_the_scene(monkeypatch):
    """A heavy teacher's two answers on the scene take seconds at the end of a click: the bar keeps moving."""
    release, waited, real = threading.Event(), [], duels.answers

    def slow(*args):
        waited.append(release.wait(10))
        return real(*args)

    monkeypatch.setattr(duels, "answers", slow)
    monkeypatch.setattr(duels, "HEARTBEAT_S", 0.01)
    at_the_end = 0
    for update in duels.duel(fresh_teacher(), SCENE, Setting(layers=("dec1",), k=1, a=3.0), ATTACK, seed=7):
        if update.step == update.total and update.scores is None:
            at_the_end += 1
            if at_the_end == 3:
                release.set()
    assert waited == [True] and update.verdict is not None  # the teacher answered once released, not on a timeout
