"""The app over its real HTTP API (gradio_client): every endpoint agrees with the library."""
import csv
import dataclasses
import io
import json
import re
import subprocess
import sys
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import COFFEE, ROOT
from PIL import Image
from torch import nn

from app.attack.distill import Attack
from app.bench import visit_and_distill
from app.data.images import load_rgb, to_uint8
from app.data.tasks import TASKS
from app.defense.asvp import defend
from app.defense.setting import Setting
from app.lab import duels, looks, scenes
from app.lab.presets import noise_floor, preset
from app.teachers import sessions
from app.teachers.families import FAMILIES
from app.teachers.loader import load_teacher
from app.teachers.networks import restore
from app.ui import plots
from app.ui.settings import setting_link
from app.ui.texts import perturbation_caption, score_rows, teacher_facts, verdict_markdown


def settings(task):
    return preset(task).defense.controls()


def caption_psnr(caption: str) -> float:
    return float(re.search(r"([\d.]+) dB", caption).group(1))


@pytest.mark.parametrize("task", list(TASKS))
def test_look_matches_the_library(client, task):
    out = client.predict(task=task, image=handle_file(str(COFFEE)), already_degraded=False, seed=0,
                         **settings(task), api_name="/look")
    note, inp, gt, clean, defended, spectra, pert, freq, inp_cap, gt_cap, clean_cap, defended_cap, pert_cap = out
    assert "seed 0" in note and gt_cap == "ground truth" and "grey = 0" in pert_cap
    for img in (inp, gt, clean, defended, pert):
        assert Path(img).is_file()
    assert spectra["type"] == "plotly" and freq["type"] == "plotly"
    scene = scenes.make_scene(TASKS[task], load_rgb(COFFEE), False, 0)
    view = looks.look(load_teacher(task).model, scene, preset(task).defense)
    assert caption_psnr(clean_cap) == pytest.approx(view.scores.teacher.psnr, abs=0.006)
    assert caption_psnr(defended_cap) == pytest.approx(view.scores.defended_teacher.psnr, abs=0.006)
    assert caption_psnr(inp_cap) == pytest.approx(view.scores.input.psnr, abs=0.006)


def test_an_exposed_setting_shows_no_served_change_instead_of_magnified_rounding():
    scene, teacher = scenes.make_scene(TASKS["dehaze"], load_rgb(COFFEE), False, 0), load_teacher("dehaze").model
    exposed = looks.look(teacher, scene, Setting(k=1, a=100.0, layers=("dec1",), placement="exposed"))
    assert exposed.span == 0 and np.all(exposed.perturbation == 0.5)
    assert perturbation_caption(exposed.span) == "no served change (grey = 0 everywhere)"
    figure = plots.frequency_figure(exposed.freqs, exposed.power)
    assert not figure.data and "no served change" in figure.layout.annotations[0].text
    inline = looks.look(teacher, scene, Setting(k=1, a=100.0, layers=("dec1",)))
    assert inline.span > 0 and perturbation_caption(inline.span).startswith("shown x")
    assert plots.frequency_figure(inline.freqs, inline.power).data


def test_a_click_scores_the_answers_its_look_showed_and_recomputes_for_another_setting():
    scene, teacher = scenes.make_scene(TASKS["dehaze"], load_rgb(COFFEE), False, 0), load_teacher("dehaze").model
    forwards = []
    hook = teacher.register_forward_hook(lambda *_: forwards.append(1))
    try:
        shown = looks.look(teacher, scene, Setting(k=1, a=3.0, layers=("dec1",)))
        assert len(forwards) == 2
        clean, defended = looks.answers(teacher, scene, Setting(k=1, a=3.0, layers=("dec1",)))
        assert len(forwards) == 2 and clean is shown.clean and defended is shown.defended
        stronger = looks.answers(teacher, scene, Setting(k=1, a=6.0, layers=("dec1",)))
        assert len(forwards) == 4 and not np.array_equal(stronger[1], defended)
        twin = load_teacher("dehaze").model  # the same weights, another module: its own forward
        twin.register_forward_hook(lambda *_: forwards.append(2))
        assert np.array_equal(looks.answers(twin, scene, Setting(k=1, a=6.0, layers=("dec1",)))[1], stronger[1])
        assert forwards[4:] == [2, 2]
    finally:
        hook.remove()


FREED_IN_A_TURN = """
import threading, torch
from pathlib import Path
from torch import nn
from app.lab.looks import teacher_turn
rss = lambda: int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                       if line.startswith("VmRSS"))) * 1024
teacher, held = nn.Identity(), []
def forward():
    with teacher_turn(teacher):
        pieces = [torch.ones(16384) for _ in range(3200)]  # 64 kB each, under glibc's mmap threshold: 200 MB
        held.append(torch.ones(16))  # made after them: the freed pages are not the top of the thread's heap
        del pieces
before = rss()
visitor = threading.Thread(target=forward)
visitor.start()
visitor.join()
print(rss() - before)
"""


def test_a_teacher_turn_gives_the_memory_its_forward_freed_back():
    """A forward's activations are freed in its thread's heap, where glibc keeps them: eight sessions held ~1.5 GB
    more than their largest forward needed (python -m app.bench)."""
    run = subprocess.run([sys.executable, "-c", FREED_IN_A_TURN], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) < 30e6  # of 200 MB freed in a heap that glibc would keep (measured: 203 MB)


class WatchedTurn:
    """A teacher's turn lock (app.lab.looks.teacher_turn) that says when an event starts waiting for it."""

    def __init__(self, met: threading.Event):
        self.lock, self.met = threading.Lock(), met

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            self.met.set()
            self.lock.acquire()
        return self

    def __exit__(self, *exc):
        self.lock.release()


class Gate(nn.Module):
    """Holds the look's hooked forward until the other event has met it: either waiting for its turn,
    or (without turns, the bug guarded against) running a forward of its own under the look's hook."""

    def __init__(self, met: threading.Event):
        super().__init__()
        self.met, self.hooked, self.look, self.forwards = met, threading.Event(), None, 0

    def forward(self, x):
        if threading.get_ident() != self.look:
            self.met.set()
        else:
            self.forwards += 1
            if self.forwards == 2:  # the look's second forward: the hooked one
                self.hooked.set()
                assert self.met.wait(30), "the other event never reached the teacher"
        return x


STRONG = Setting(k=1, a=100.0, layers=("0",))


def gated_teacher() -> nn.Sequential:
    """A teacher whose turns are watched and whose look can be held in its hooked forward."""
    met = threading.Event()
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Gate(met), nn.Conv2d(8, 3, 3, padding=1))
    looks._turns[teacher] = WatchedTurn(met)
    return teacher


@contextmanager
def a_look_under_way(teacher, degraded):
    """A look of the same session, on the same teacher, inside its hooked forward as the block starts."""
    gate = teacher[1]
    gate.met.clear()  # forwards before the block met nobody

    def look():
        gate.look = threading.get_ident()
        looks.answers(teacher, scenes.Scene(TASKS["dehaze"], degraded, None), STRONG)

    looking = threading.Thread(target=look)
    looking.start()
    assert gate.hooked.wait(30)
    yield
    looking.join()


def test_a_look_and_a_sweep_of_one_session_take_turns_on_its_teacher():
    """A look's in-line hook sits on the module through its forward: a sweep's look that overlaps it
    must not compute its clean answer under that hook."""
    teacher, degraded = gated_teacher(), np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
    alone, other = restore(teacher, degraded), dataclasses.replace(STRONG, a=2.0)
    with a_look_under_way(teacher, degraded):
        clean, defended = looks.answers(teacher, scenes.Scene(TASKS["dehaze"], degraded, None), other)
    assert np.array_equal(clean, alone)
    with defend(teacher, other):
        assert np.array_equal(defended, restore(teacher, degraded))  # one defense on it, not two


def test_a_distill_click_waits_for_the_look_under_way_before_its_teacher_answers():
    teacher, degraded = gated_teacher(), np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
    scene, attack = scenes.Scene(TASKS["dehaze"], degraded, None), Attack(steps=1, queries=8, variants=1)
    *_, alone = duels.duel(teacher, scene, dataclasses.replace(STRONG, a=2.0), attack, seed=0)
    same = gated_teacher()  # the same weights, no clean-taught twin kept: both students train under the look
    same.load_state_dict(teacher.state_dict())
    with a_look_under_way(same, degraded):
        *_, overlapped = duels.duel(same, scene, dataclasses.replace(STRONG, a=2.0), attack, seed=0)
    for student, twin in zip(alone.students, overlapped.students):
        assert np.array_equal(student, twin)


def test_the_bench_visitor_speaks_the_app_api(app_url):
    """`python -m app.bench` drives concurrent visitors with these calls: a changed endpoint fails here."""
    assert visit_and_distill(app_url, seed=0, budget=10)


def test_degraded_upload_has_no_reference(client):
    out = client.predict(task="dehaze", image=handle_file(str(COFFEE)), already_degraded=True, seed=0,
                         **settings("dehaze"), api_name="/look")
    assert "no ground truth" in out[0] and out[2] is None and "no ground truth" in out[9]
    assert out[10] == "teacher: no reference"


def test_distill_streams_and_matches_the_library(client):
    client.predict(task="derain", image=handle_file(str(COFFEE)), already_degraded=False, seed=1,
                   **settings("derain"), api_name="/look")
    job = client.submit(**settings("derain"), attacker=preset("derain").attacker, budget=20, seed=1,
                        api_name="/distill")
    loss, s_clean, s_def, table, verdict, link, download = job.result(timeout=300)
    assert len(job.outputs()) >= 3  # progress arrived as a stream, not one final answer
    assert Path(s_clean["value"]).is_file() and Path(s_def["value"]).is_file()
    assert verdict.startswith("**Verdict.**")
    scene = scenes.make_scene(TASKS["derain"], load_rgb(COFFEE), False, 1)
    start = preset("derain")
    *_, last = duels.duel(load_teacher("derain").model, scene, start.defense,
                        dataclasses.replace(start.attack, steps=20), 1)
    assert table["data"][:5] == score_rows(last.scores)[:5]  # the no-theft row: shown once trained in the background
    assert table["data"][5][0] == "student (no teacher: stole nothing)"
    assert verdict == verdict_markdown(last.verdict, start.defense, start.attack,
                                       noise_floor("derain")) and "**Why.**" in verdict
    with zipfile.ZipFile(download["value"]) as bundle:  # the session to take away
        assert set(bundle.namelist()) == {"settings.json", "metrics.csv", "verdict.md", "degraded.png", "input.png",
                                          "ground_truth.png", "teacher.png", "teacher_asvp.png",
                                          "student_clean_teacher.png", "student_defended_teacher.png"}
        assert list(csv.reader(io.StringIO(bundle.read("metrics.csv").decode())))[1:] == table["data"]
        assert bundle.read("verdict.md").decode() == verdict + "\n"
        view = looks.look(load_teacher("derain").model, scene, start.defense)
        for name, image in (("input", view.baseline), ("teacher", view.clean), ("teacher_asvp", view.defended)):
            assert np.array_equal(np.asarray(Image.open(bundle.open(f"{name}.png"))), to_uint8(image))
        saved = json.loads(bundle.read("settings.json"))
        assert (saved["task"], saved["seed"], saved["budget"]) == ("derain", 1, 20)
        assert saved["defense"]["a"] == start.defense.a and saved["attacker"] == start.attacker
        assert f"]({setting_link(saved)})" in link and saved["link"] == setting_link(saved)
        with Image.open(io.BytesIO(bundle.read("student_defended_teacher.png"))) as shown:
            assert np.array_equal(np.asarray(shown), to_uint8(last.students[1]))


def test_sweep_over_a(client):
    client.predict(task="sr_x2", image=handle_file(str(COFFEE)), already_degraded=False, seed=0,
                   **settings("sr_x2"), api_name="/look")
    fig = client.predict(k=2, layer="dec1", layout="channel", adaptive=False, tau=0.9, placement="inline",
                         api_name="/sweep")
    assert fig["type"] == "plotly" and '"amplification a"' in fig["plot"]


@pytest.mark.parametrize("task", ["sr_x4", "dehaze"])
def test_loading_a_task_sets_its_defaults_and_student_budget(client, task):
    _facts, layer, k, a, layout, adaptive, tau, placement, attacker, budget = client.predict(
        task=task, source=task, api_name="/load_teacher")
    start = preset(task)
    d = start.defense
    assert (layer["value"], k, a, layout, adaptive, placement) == (d.layers[0], d.k, d.a, d.layout, d.tau is not None,
                                                                   d.placement)
    assert (attacker, budget) == (start.attacker, start.attack.steps)
    offered = [value for _label, value in layer["choices"]]
    assert d.layers[0] in offered and "dec1.1" in offered and "dec1.1.fc1" not in offered  # no channel gates


def test_the_facts_say_where_a_teacher_runs_and_why_not_where_asked():
    facts = teacher_facts(sessions.session_teacher("dehaze"), preset("dehaze"), "ASVP_DEVICE='gpu' is not one of ...")
    assert "students run on CPU" in facts and "⚠️ ASVP_DEVICE='gpu'" in facts


def test_a_field_teacher_loads_with_its_family_licence_and_default_hook(client):
    facts, layer, *_ = client.predict(task="dehaze", source="dehaze-nafnet", api_name="/load_teacher")
    start = preset("dehaze", FAMILIES["NAFNet"])  # the bundled NAFNet's sweep entry, or the built-in setting
    assert "NAFNet" in facts and "licence MIT" in facts and start.source in facts and "run on CPU" in facts
    assert layer["value"] == (start.defense.layers[0] if start.source.startswith("swept") else "net.decoders.2")
    assert all(value == "net" or value.startswith("net.") for _label, value in layer["choices"])
    with pytest.raises(Exception, match="upscales x2, but task dehaze needs x1"):
        client.predict(task="dehaze", source="sr_x2-compact", api_name="/load_teacher")


def test_a_look_that_ends_after_a_load_keeps_the_loaded_teacher(app_url):
    visitor = Client(app_url, verbose=False)  # a session of its own
    look = dict(task="dehaze", image=handle_file(str(COFFEE)), already_degraded=False, seed=0)
    visitor.predict(**look, **settings("dehaze"), api_name="/look")  # the session holds our U-Net
    slow = visitor.submit(**look, **settings("dehaze"), api_name="/look")  # still running when the load lands
    visitor.predict(task="dehaze", source="dehaze-nafnet", api_name="/load_teacher")
    try:
        slow.result(timeout=120)
    except AppError as e:  # the queue ran it after the load: the NAFNet has no U-Net layer, and says so
        assert f"unknown layer '{settings('dehaze')['layer']}'" in str(e)
    out = visitor.predict(**look, **dict(settings("dehaze"), layer="net.decoders.2", k=3), api_name="/look")
    assert "at net.decoders.2" in out[5]["plot"]  # the spectra of the NAFNet's hook, not an unknown-layer error


def test_plot_titles_fit_long_layer_names():
    name = "net.body.0.denoiser.decoder_layers.1.2"  # a RetinexFormer stage
    title = plots.spectra_figure(np.ones(4), np.ones(4), 1, name).layout.title.text
    shown = title.split("<sup>at ")[1].removesuffix("</sup>")
    assert len(shown) <= plots.TITLE_CHARS and shown.startswith("net.body") and shown.endswith("layers.1.2")
    assert plots.short("dec1") == "dec1"
