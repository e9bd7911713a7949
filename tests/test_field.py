"""The field student: a real architecture (spandrel's Compact for SR, NAFNet for the rest) split as the quick
student is, trained by the same trainer, reproducible under a seed, and kept apart from quick students' rows."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import weights

from app.attack.attackers import attack_for
from app.attack.distill import FieldAttack, distill
from app.attack.field import NAFNET_LR, FieldStudent
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.study.crosscheck import stored_row
from app.study.engine import row_key
from app.study.protocol import Pairs, Row
from app.study.stages import Search
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


@pytest.mark.parametrize("task", ["dehaze", "sr_x2"])
def test_a_field_student_trains_at_its_own_rate(task):
    """NAFNet at its published rate (at the quick students' 4e-3 an L2 thief's NAFNet blew up on low light), the
    Compact at the attacker's: Adam's first step moves the weights that get a gradient by the rate itself."""
    quick = dataclasses.replace(attack_for(task), steps=1, queries=8, batch=2, patch=32)
    attack = FieldAttack.of(quick, TASKS[task].scale)
    rate = NAFNET_LR if TASKS[task].scale == 1 else quick.lr
    assert attack.lr == rate and dataclasses.replace(attack, lr=quick.lr) == FieldAttack(**dataclasses.asdict(quick))
    torch.manual_seed(3)
    before = weights(FieldStudent(TASKS[task].scale))
    *_, last = distill(load_teacher(task).model, TASKS[task], [(Setting(layers=("dec1",)), 3)], attack, every=1)
    assert (weights(last.students[0]) - before).abs().max().item() == pytest.approx(rate, rel=1e-3)


def test_a_crosscheck_rebuilds_the_field_stage_rows_it_reads():
    """Each stored record is re-measured from its columns: a field row must hash to its key again, rate and all."""
    quick = dataclasses.replace(attack_for("dehaze"), steps=10_000)
    search = Search("dehaze", "dehaze", attack_for("dehaze"), Pairs(n=1, crop=64), ["dec1"], quick=False)
    setting = Setting(layers=("dec1",), k=1, a=100.0, placement="exposed")
    for attack in (FieldAttack.of(quick, 1), quick):
        row = search.row("field", setting, attack)
        record = dict(budget=attack.steps, attacker=attack.label, student=attack.student, stage="field",
                      defense="asvp", seed=2, key=row_key(row, 2), **setting.row())
        assert stored_row(search, record) == (row, 2)
