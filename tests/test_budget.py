"""A teacher's cost is measured before it serves: a small checkpoint whose hyper-parameters make a
forward expensive is refused at load, quickly and without the memory it would take; the bundled
teachers fit the budget."""
import json
import subprocess
import sys

import pytest
import torch
from helpers import ROOT
from safetensors.torch import save_file
from torch import nn

from app.teachers import budget, sessions
from app.teachers.budget import APP_BUDGET, Budget, Cost, measure, on_meta
from app.teachers.families import import_spandrel
from app.teachers.loader import TeacherLoadError, load_teacher
from app.teachers.registry import bundled
from app.teachers.sessions import session_teacher


import_spandrel()
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402


def test_the_peak_counts_the_tensors_alive_at_once():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    peak, flops = on_meta(conv, 64)
    assert peak == (3 + 8) * 64 * 64 * 4  # the input and the output, both alive at the end
    assert flops == 2 * 8 * 3 * 9 * 64 * 64


def test_a_refusal_names_the_cost_and_the_limit():
    assert Cost(512, 4.6, 5.0, 0.1, timed=False).refusal(APP_BUDGET) == (
        "a look at the largest upload (512 x 512 px in) would hold 4.6 GB; the limit is 1.5 GB")
    assert Cost(128, 0.2, 900.0, 31.0).refusal(APP_BUDGET) == (
        "a look at the largest upload (128 x 128 px in) would take about 31 s here (900 GFLOP a forward); the limit "
        "is 10 s")
    assert Cost(128, 0.2, 9.0, 1.0).refusal(APP_BUDGET) == ""


@pytest.mark.parametrize("seconds_per_pixel,serves", [(2e-5, 256), (1e-4, 156), (1e-2, None)])
def test_a_teacher_too_slow_for_the_largest_upload_serves_smaller_images(monkeypatch, seconds_per_pixel, serves):
    """Timed forwards that grow with the pixels: at 1e-4 s a pixel a look at 256 px in is estimated at 26 s (two
    forwards of 6.6 s, doubled for safety), so it serves 156 px in (9.7 s); at 1e-2 s even the smallest side
    it may serve (128 px in) is refused, naming it."""
    monkeypatch.setattr(budget, "seconds", lambda model, side: seconds_per_pixel * side ** 2)
    cost = measure(nn.Conv2d(3, 12, 3, padding=1), 2)
    if serves is None:
        assert cost.refusal(APP_BUDGET).startswith("even a look at the smallest side it may serve (128 x 128 px in)")
        return
    assert cost.side == serves and cost.look_s <= APP_BUDGET.look_s and not cost.refusal(APP_BUDGET)
    assert cost.serves_less == (serves < 256) and cost.seconds_per_pixel == pytest.approx(seconds_per_pixel)
    if cost.serves_less:
        assert cost.upload_look_s == pytest.approx(2 * 2 * seconds_per_pixel * 256 ** 2)


def test_operations_no_cpu_gets_through_in_time_are_refused_untried(monkeypatch):
    monkeypatch.setattr(budget, "FASTEST_FLOPS", 1e3)
    monkeypatch.setattr(budget, "seconds", lambda *a: pytest.fail("the model was run"))
    cost = measure(nn.Conv2d(3, 3, 3, padding=1), 1)
    assert not cost.timed and "would take at least" in cost.refusal(APP_BUDGET)


@pytest.mark.parametrize("name", sorted(bundled()))
def test_every_bundled_teacher_fits_the_apps_budget_on_the_meta_device(name):
    loaded = session_teacher(bundled()[name].task, name).loaded
    peak, flops = on_meta(loaded.model, 512 // loaded.scale)
    assert peak < APP_BUDGET.extra_gb * 1e9 / 3 and flops < 100e9  # far inside: room for a heavy field model


def hostile_checkpoint(path) -> None:
    """8.6 MB of SwinIR whose 32 x 32 windows make attention maps of a million entries each."""
    torch.manual_seed(0)
    net = SwinIR(upscale=2, img_size=64, window_size=32, embed_dim=16, depths=[1], num_heads=[8], mlp_ratio=1,
                 upsampler="pixelshuffledirect")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)


def test_a_small_checkpoint_with_an_expensive_forward_is_refused_at_load_without_a_forward_and_lean(tmp_path):
    """In a fresh interpreter, so the memory it grew by is its own. Quick because no timed forward runs (a clock
    would measure the machine's load as well)."""
    hostile_checkpoint(tmp_path / "x2.safetensors")
    code = f"""
import json, resource
from pathlib import Path
import app.teachers.budget as budget
import app.teachers.sessions as sessions
from app.teachers.families import import_spandrel
from app.teachers.loader import TeacherLoadError, load_teacher
import_spandrel()
sessions.load_teacher = lambda source: load_teacher(Path(source))  # as the box's Hub load, from a local file
timed, seconds = [], budget.seconds
budget.seconds = lambda model, side: timed.append(side) or seconds(model, side)  # a real forward, counted
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
try:
    sessions.session_teacher("sr_x2", {str(tmp_path / "x2.safetensors")!r})
    message = ""
except TeacherLoadError as e:
    message = str(e)
print(json.dumps(dict(message=message, forwards=len(timed), grew=rss() - before)))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert "is over the lab's cost budget: a look at the largest upload (256 x 256 px in) would hold" in found["message"]
    assert "the limit is 1.5 GB" in found["message"]
    assert found["forwards"] == 0 and found["grew"] < 300e6


def test_a_raised_budget_lets_the_same_checkpoint_through(tmp_path, monkeypatch):
    hostile_checkpoint(tmp_path / "x2.safetensors")
    monkeypatch.setattr(budget, "seconds", lambda model, side: 0.01)  # not run for real here: it is heavy
    monkeypatch.setattr(sessions, "load_teacher", lambda source: load_teacher(tmp_path / "x2.safetensors"))
    with pytest.raises(TeacherLoadError, match="cost budget"):
        session_teacher("sr_x2", "someone/hostile-x2")
    assert session_teacher("sr_x2", "someone/hostile-x2", budget=Budget(extra_gb=8.0)).loaded.cost.peak_gb > 1.5
