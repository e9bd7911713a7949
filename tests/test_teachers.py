"""Every bundled teacher loads from its folder (our config.json layout or a bare field checkpoint)
and restores better than its input."""
import threading

import pytest
import torch
from helpers import COFFEE

from app.data.images import load_rgb
from app.data.metrics import score
from app.data.tasks import TASKS
from app.teachers.evaluate import versus_unet
from app.teachers.loader import load_teacher
from app.teachers.networks import restore
from app.teachers.registry import bundled, bundled_for
from app.teachers.seeding import GLOBAL_DRAWS


CLEAN = load_rgb(COFFEE)[64:192, 64:192]
TEACHERS = {name: task for task in TASKS for name in bundled_for(task)}


def test_every_task_has_a_bundled_unet_and_every_teacher_a_task_and_a_card():
    folders = {name: t.folder for name, t in bundled().items()}
    assert set(TASKS) <= set(folders) and set(folders) == set(TEACHERS)
    for folder in folders.values():
        assert (folder / "model.safetensors").stat().st_size < 8_000_000
        card = (folder / "README.md").read_text()
        assert "Measured by `python -m app.evaluate --write-cards`" in card and "## Licence" in card


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_teacher_restores_better_than_the_input(name):
    task, teacher = TASKS[TEACHERS[name]], load_teacher(name)
    assert teacher.scale == task.scale
    degraded, clean = task.make_pair(CLEAN, seed=7)
    restored = restore(teacher.model, degraded)
    assert restored.shape == clean.shape
    before = score(task.input_baseline(degraded, clean.shape), clean, task)["psnr"]
    assert score(restored, clean, task)["psnr"] > before + (0.3 if task.scale > 1 else 1.0)


def test_a_field_teacher_card_says_why_it_misses_the_unet():
    unet = dict(task="dehaze", teacher_psnr=18.0, teacher_ssim=0.8, synthetic_psnr=20.0)
    shifted = dict(unet, teacher_psnr=17.0, synthetic_psnr=21.0)  # better on synthetic pairs, worse on real ones
    weaker = dict(unet, teacher_psnr=17.0, synthetic_psnr=19.5)
    better = dict(unet, teacher_psnr=18.5, synthetic_psnr=19.0)
    results = {"dehaze": unet, "dehaze-nafnet": shifted}
    assert versus_unet("dehaze", unet, results) == ""
    assert "-1.00 dB PSNR" in versus_unet("x", shifted, results) and "+1.00 dB." in versus_unet("x", shifted, results)
    assert "shift from our synthetic degradation to the real one" in versus_unet("x", shifted, results)
    assert "under-trained" in versus_unet("x", weaker, results)
    assert "beats it" in versus_unet("x", better, results) and "Why" not in versus_unet("x", better, results)


@pytest.mark.parametrize("name", ["dehaze", "dehaze-nafnet"])  # our layout built from its config; spandrel's build
def test_loading_a_teacher_draws_apart_from_the_students(name):
    """A teacher's random init (overwritten by its weights) leaves torch's global generator as it was, and waits
    while a student seeds it and draws its weights in another thread: that student keeps its twin's weights."""
    state = torch.get_rng_state()
    load_teacher(name)
    assert torch.equal(torch.get_rng_state(), state)
    loading = threading.Thread(target=load_teacher, args=(name,))
    with GLOBAL_DRAWS:  # a student drawing its weights
        loading.start()
        loading.join(timeout=2.0)
        assert loading.is_alive()
    loading.join(timeout=60)
    assert not loading.is_alive()
