"""The field student: a real architecture (spandrel's Compact for SR, NAFNet for the rest) split as the quick
student is, trained by the same trainer, reproducible under a seed, and kept apart from quick students' rows."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import weights

from app.attack.attackers import attack_for
from app.attack.distill import FieldAttack, distill
from app.attack.field import FieldStudent
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.study.engine import row_key
from app.study.protocol import Pairs, Row
from app.teachers.loader import load_teacher


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_the_split_student_computes_what_spandrels_network_does(scale):
    torch.manual_seed(0)
    student = FieldStudent(scale)
    for p in student.parameters():  # the last conv starts at zero: make it say something
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 24, 16)  # a multiple of NAFNet's stride, as every training patch is
    split = F.pixel_shuffle(student.residual(student.features(x)), scale) if scale > 1 else (
        student.residual(student.features(x)))
    base = F.interpolate(x, scale_factor=scale, mode="nearest") if scale > 1 else x  # spandrel's own base
    torch.testing.assert_close(split + base, student.net(x), atol=1e-5, rtol=1e-5)
    odd = torch.rand(1, 3, 21, 19)  # padded to the stride inside, cropped back
    assert student.features(odd).shape == (1, student.width, 21, 19) and student(odd).shape == (1, 3, 21 * scale,
                                                                                               19 * scale)


@pytest.mark.parametrize("scale", [1, 4])
def test_an_untrained_field_student_returns_its_upsampled_input(scale):
    x = torch.rand(1, 3, 16, 16)
    out = FieldStudent(scale)(x)
    expected = x if scale == 1 else F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("task,kind", [("dehaze", "output"), ("sr_x2", "feature")])
def test_the_field_student_equals_itself_under_a_seed_and_learns(task, kind):
    teacher = load_teacher(task).model
    attack = FieldAttack(**dataclasses.asdict(dataclasses.replace(attack_for(task), kind=kind, steps=8, queries=8,
                                                                    batch=2, patch=32)))
    runs = [(Setting(layers=("dec1",)), 3)] * 2
    *_, last = distill(teacher, TASKS[task], runs, attack, every=attack.steps)
    first, second = last.students
    assert isinstance(first, FieldStudent) and torch.equal(weights(first), weights(second))
    assert last.losses[0] == last.losses[1] and last.losses[0] < 1  # it fitted something, the same both times
    torch.manual_seed(3)  # the student as its seed made it, before training
    assert not torch.equal(weights(first), weights(FieldStudent(TASKS[task].scale)))


def test_a_field_row_is_keyed_apart_from_the_quick_row_of_the_same_attacker():
    quick = dataclasses.replace(attack_for("dehaze"), steps=10_000)
    field = FieldAttack(**dataclasses.asdict(quick))
    rows = [Row("dehaze", "dehaze", "field", "asvp", Setting(layers=("dec1",)), a, Pairs()) for a in (quick, field)]
    assert row_key(rows[0], 0) != row_key(rows[1], 0)
    assert field.label == quick.label and field.student.startswith("field student") and not field.stacks
    assert dataclasses.asdict(quick) == dataclasses.asdict(attack_for("dehaze")) | {"steps": 10_000}
