"""Bad input never crashes the app: each gets a short message, and the next request is served."""
import math
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from helpers import COFFEE
from PIL import Image

from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.lab import looks, scenes
from app.lab.presets import preset
from app.ui.inputs import MESSAGE_CHARS, defense_from


GOOD = dict(k=1, a=1.5, layer="dec1", layout="channel", adaptive=False, tau=0.9, placement="inline")


def look(client, path, task="dehaze", already=False, **controls):
    return client.predict(task=task, image=handle_file(str(path)), already_degraded=already, seed=0,
                          **{**GOOD, **controls}, api_name="/look")


def still_serving(client):
    assert "seed 0" in look(client, COFFEE)[0]


def make_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    photo = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    files = {"text.png": b"this is not an image", "empty.png": b""}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.fromarray(photo).save(folder / "whole.png")
    (folder / "corrupt.png").write_bytes((folder / "whole.png").read_bytes()[:200])
    Image.fromarray(photo[:1, :1]).save(folder / "1x1.png")
    Image.fromarray(photo[:8, :8]).save(folder / "8x8.png")
    return {n: folder / n for n in ("text.png", "empty.png", "corrupt.png", "1x1.png", "8x8.png")}


def test_unreadable_and_tiny_uploads_get_clear_messages(client, tmp_path):
    expected = {"text.png": "Could not read the image", "empty.png": "", "corrupt.png": "Could not read the image",
                "1x1.png": "needs at least 16x16", "8x8.png": "needs at least 16x16"}
    for name, path in make_files(tmp_path).items():
        with pytest.raises(Exception) as err:
            look(client, path)
        assert expected[name] in str(err.value), (name, str(err.value))
        still_serving(client)


def test_awkward_but_valid_images_work(client, tmp_path):
    rng = np.random.default_rng(1)
    rgb = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((64, 80), 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    for name in ("grey.png", "rgba.png", "grey16.png", "palette.png"):
        assert "seed 0" in look(client, tmp_path / name)[0], name
    out = look(client, tmp_path / "rotated.jpg")
    assert Image.open(out[2]).size == (64, 80)  # ground truth is upright: 80 tall, 64 wide


def test_huge_upload_is_downscaled_to_the_cap(client, tmp_path):
    Image.new("RGB", (8000, 8000), (90, 120, 150)).save(tmp_path / "huge.jpg", quality=80)
    out = look(client, tmp_path / "huge.jpg")
    assert "downscaled" in out[0] or Image.open(out[2]).size == (512, 512)
    assert max(Image.open(out[2]).size) <= 512


OUT_OF_RANGE = r"less than minimum|greater than maximum|must be"  # the slider's own check, or ours


@pytest.mark.parametrize("controls,message", [
    (dict(k=-1), OUT_OF_RANGE), (dict(k=10**6), OUT_OF_RANGE), (dict(a=0.0), OUT_OF_RANGE),
    (dict(a=-2.0), OUT_OF_RANGE), (dict(a=1e9), OUT_OF_RANGE), (dict(tau=7.0), OUT_OF_RANGE),
    (dict(layer="no_such_layer"), "no_such_layer"), (dict(task="teleport"), "teleport"),
])
def test_bad_controls_through_the_api(client, controls, message):
    task = controls.pop("task", "dehaze")
    with pytest.raises(Exception, match=message):
        look(client, COFFEE, task=task, adaptive="tau" in controls, **controls)
    still_serving(client)


@pytest.mark.parametrize("a", [math.nan, math.inf, -math.inf])
def test_non_finite_amplification_reaches_no_op(a):
    """JSON cannot carry NaN or inf, so this guards Python callers of the handlers' settings."""
    with pytest.raises(gr.Error, match="a must be a finite number"):
        defense_from(1, a, "dec1", "channel", False, 0.9, "inline")


def test_k_beyond_the_channels_is_clamped_not_an_error(client):
    assert "seed 0" in look(client, COFFEE, k=32, a=2.0)[0]


def test_student_budget_beyond_the_cap(client):
    look(client, COFFEE)
    with pytest.raises(Exception, match="budget|maximum|600"):
        client.predict(**GOOD, attacker="output L1", budget=10**6, seed=0, api_name="/distill")
    still_serving(client)


def test_an_unknown_attacker_or_pick_is_refused_by_name(client):
    look(client, COFFEE)
    with pytest.raises(Exception, match="telepathy"):
        client.predict(**GOOD, attacker="telepathy", budget=10, seed=0, api_name="/distill")
    with pytest.raises(Exception, match="best"):
        client.predict(task="dehaze", source="dehaze", pick="best", api_name="/load_teacher")
    still_serving(client)


def test_the_strongest_pick_loads_the_search_s_strongest_setting_and_its_attacker(client):
    _facts, layer, k, a, _layout, _adaptive, _tau, placement, attacker, _budget = client.predict(
        task="dehaze", source="dehaze", pick="strongest", api_name="/load_teacher")
    start = preset("dehaze", pick="strongest")
    assert (layer["value"], k, a, placement, attacker) == (start.defense.layers[0], start.defense.k, start.defense.a,
                                                           start.defense.placement, start.attacker)


@pytest.mark.parametrize("source,message", [
    ("nobody/no-such-teacher", "unreachable"), ("../../etc/passwd", "nor a Hub repo id"),
])
def test_bad_teacher_sources(client, source, message):
    with pytest.raises(Exception, match=message):
        client.predict(task="dehaze", source=source, api_name="/load_teacher")
    still_serving(client)


@pytest.mark.slow
def test_four_sessions_distill_at_once_with_their_own_results(app_url):
    tasks = ["dehaze", "derain", "lowlight", "sr_x2"]
    results, positions = {}, {}

    def session(task):
        c = Client(app_url, verbose=False)
        look(c, COFFEE, task=task)
        job = c.submit(**GOOD, attacker="output L1", budget=10, seed=0, api_name="/distill")
        ranks = set()
        while not job.done():
            status = job.status()
            if status.rank is not None:
                ranks.add(status.rank)
            time.sleep(0.05)  # poll, but leave the CPU to the server in this same process
        positions[task] = ranks
        results[task] = job.result()

    threads = [threading.Thread(target=session, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert set(results) == set(tasks)
    teachers = {t: results[t][3]["data"][1][1] for t in tasks}  # the clean teacher's PSNR on each task
    assert len(set(teachers.values())) == 4  # four different tasks, four different teachers and images
    assert any(ranks for ranks in positions.values())  # the queue told someone where they stood


def test_an_unexpected_failure_inside_a_look_reaches_the_visitor_as_a_short_message(client, monkeypatch):
    def broken(*args):
        raise KeyError("x" * 5000)  # no type the lab expects, and a long detail

    monkeypatch.setattr(looks, "look", broken)
    with pytest.raises(Exception, match=r"something failed on the server \(KeyError: 'x+…x+'\); it keeps serving") \
            as raised:
        look(client, COFFEE)
    assert len(str(raised.value)) < 2 * MESSAGE_CHARS
    monkeypatch.undo()
    still_serving(client)


def test_a_teacher_whose_answer_is_not_finite_is_refused_with_a_message():
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 1))
    torch.nn.init.constant_(teacher[0].weight, 3e38)  # finite weights: the first layer overflows to infinity...
    with torch.no_grad():
        teacher[1].weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1).repeat(3, 1, 1, 1))  # ...and NaN
    scene = scenes.Scene(TASKS["dehaze"], np.full((16, 16, 3), 0.5, np.float32), None)
    with pytest.raises(ValueError, match="the teacher's answer holds values that are not finite"):
        looks.answers(teacher, scene, Setting(layers=("0",), a=1.0))
