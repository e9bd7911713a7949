"""The output-KD bound, checked with a student it covers: a linear 3x3 filter fitted by least squares."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.data.sources import ATTACKER_IMAGES, PairPool
from app.data.tasks import TASKS
from app.defense.asvp import defend
from app.defense.bound import bound_db, rms
from app.defense.setting import Setting
from app.teachers.loader import load_teacher


def neighbourhoods(x: torch.Tensor) -> torch.Tensor:
    """(N*H*W) x 28: each pixel's 3x3 RGB neighbourhood and a constant (a linear student's inputs)."""
    cols = F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3)  # N x 27 x HW
    design = cols.permute(0, 2, 1).reshape(-1, 27)
    return torch.cat([design, torch.ones(len(design), 1)], 1).double()


def linear_student(design: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """The least-squares linear student's outputs on the queries: the projection of the answers onto
    everything a 3x3 linear filter can produce (a convex set)."""
    target = answers.permute(0, 2, 3, 1).reshape(-1, 3).double()
    return design @ torch.linalg.lstsq(design, target).solution


@pytest.fixture(scope="module")
def queries():
    pool = PairPool(TASKS["dehaze"], ATTACKER_IMAGES, variants=2, seed=0)
    return pool.batch(np.random.default_rng(0), 16, 48)  # degraded queries and their ground truth


@pytest.mark.parametrize("defense", [Setting(k=4, a=3.0, layers=("dec1",)), Setting(k=1, a=30.0, layers=("enc2",)),
                                     Setting(k=1, a=2.0, layout="spatial", layers=("dec1",))])
def test_a_linear_student_moves_no_further_than_the_served_answers(queries, defense):
    x, truth = queries
    teacher = load_teacher("dehaze").model
    with torch.no_grad():
        clean = teacher(x)
        with defend(teacher, defense):
            served = teacher(x)
    delta = rms(served - clean)
    assert delta > 1e-3  # the defense does change the answers
    design, flat = neighbourhoods(x), lambda img: img.permute(0, 2, 3, 1).reshape(-1, 3).double()
    student, defended_student = linear_student(design, clean), linear_student(design, served)
    moved = rms(defended_student - student)
    assert 0 < moved <= delta
    error_rise = rms(defended_student - flat(truth)) - rms(student - flat(truth))
    assert error_rise <= delta
    e = rms(student - flat(truth))
    assert bound_db(e, delta) <= 20 * np.log10(e / (e + error_rise))


def test_the_bound_is_tight_when_the_served_change_is_itself_a_linear_filter(queries):
    """Equality: a change the student class can represent passes through the projection whole, so
    the least-squares fit really is the projection the bound speaks of."""
    x, _ = queries
    teacher = load_teacher("dehaze").model
    with torch.no_grad():
        clean = teacher(x)
    blur = torch.full((3, 1, 3, 3), 1 / 9.0)
    served = clean + 0.05 * F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), blur, groups=3)
    design = neighbourhoods(x)
    moved = rms(linear_student(design, served) - linear_student(design, clean))
    assert moved == pytest.approx(rms(served - clean), rel=1e-6)


def test_bound_in_db():
    assert bound_db(0.05, 0.0) == 0
    assert bound_db(0.05, 0.05) == pytest.approx(-20 * np.log10(2))
    assert bound_db(0.05, 0.1) < bound_db(0.05, 0.05) < bound_db(0.1, 0.05) < 0
