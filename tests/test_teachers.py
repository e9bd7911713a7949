"""Every bundled teacher loads from its Hub-layout folder and restores better than its input."""
import pytest
from conftest import COFFEE

from app.hub import bundled_teachers, load_teacher
from app.images import load_rgb
from app.metrics import score
from app.nets import restore
from app.tasks import TASKS

CLEAN = load_rgb(COFFEE)[64:192, 64:192]


def test_every_task_has_a_bundled_teacher_under_5_mb():
    folders = bundled_teachers()
    assert set(folders) == set(TASKS)
    for folder in folders.values():
        assert (folder / "model.safetensors").stat().st_size < 5_000_000
        assert "Measured by `python -m app.evaluate --write-cards`" in (folder / "README.md").read_text()


@pytest.mark.parametrize("name", list(TASKS))
def test_teacher_restores_better_than_the_input(name):
    task, teacher = TASKS[name], load_teacher(name)
    assert teacher.model.scale == task.scale
    degraded, clean = task.make_pair(CLEAN, seed=7)
    restored = restore(teacher.model, degraded)
    assert restored.shape == clean.shape
    before = score(task.input_baseline(degraded, clean.shape), clean, task)["psnr"]
    assert score(restored, clean, task)["psnr"] > before + (0.3 if task.scale > 1 else 1.0)
