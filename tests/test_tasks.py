"""Each task's degradation is seeded, keeps range and shape, and actually degrades."""
from pathlib import Path

import numpy as np
import pytest

from app.data.images import load_rgb
from app.data.metrics import calculate_psnr
from app.data.tasks import TASKS, get_task


@pytest.fixture(scope="module")
def clean():
    return load_rgb(Path(__file__).resolve().parent.parent / "assets" / "chelsea.png")[:96, :128]


@pytest.mark.parametrize("name", list(TASKS))
def test_degradation_is_seeded_and_in_range(name, clean):
    task = TASKS[name]
    a, gt = task.make_pair(clean, seed=3)
    b, _ = task.make_pair(clean, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert a.shape == (gt.shape[0] // task.scale, gt.shape[1] // task.scale, 3)
    if task.scale == 1:
        assert calculate_psnr(a, gt) < 30  # it really degrades
        c, _ = task.make_pair(clean, seed=4)
        assert not np.array_equal(a, c)  # and the seed matters


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task 'nope'.*dehaze"):
        get_task("nope")
