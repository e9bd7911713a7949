"""Every tensor is made on the device of the data it meets. No GPU is lent to the tests, so the check
runs on the CPU: teacher, students and data on the `meta` device, under a dispatch mode that raises
when one op receives tensors on two devices (the meta device alone lets a CPU kernel through)."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from app.attack.attackers import NAMED, attack_for, attacker
from app.attack.distill import distill
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.lab import looks, scenes
from app.teachers.sessions import session_teacher


aten = torch.ops.aten
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}  # CPU indices serve any device
META = torch.device("meta")


class OneDevicePerOp(TorchDispatchMode):
    """Raises when an op receives tensors on two devices (CPU scalars and index tensors aside: every
    device accepts them). Reading a meta tensor (.item(), .cpu()) gives zeros, so the code runs on."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func in INDEXING:
            tensors = tensors[:1]
        devices = {t.device.type for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1:
            raise AssertionError(f"{func} received tensors on {sorted(devices)}")
        if func is aten._local_scalar_dense.default and args[0].is_meta:
            return False if args[0].dtype == torch.bool else 0
        if func is aten._to_copy.default and args[0].is_meta and torch.device(kwargs.get("device", META)).type == "cpu":
            return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        return func(*args, **kwargs)


def test_the_check_catches_a_kernel_left_on_the_cpu():
    x, kernel = torch.empty(1, 3, 8, 8, device=META), torch.ones(3, 1, 3, 3)
    F.conv2d(x, kernel.to(META), groups=3)  # the meta device alone lets the mix through...
    F.conv2d(x, kernel, groups=3)
    with OneDevicePerOp(), pytest.raises(AssertionError, match="cpu"):
        F.conv2d(x, kernel, groups=3)  # ...the check does not


@pytest.fixture(scope="module")
def teachers():
    """Two student families' tasks (dilated and SR), each with its teacher on the meta device."""
    return {task: session_teacher(task, device=META) for task in ("dehaze", "sr_x2")}


@pytest.mark.parametrize("name", list(NAMED))  # the informed attackers too
@pytest.mark.parametrize("task", ["dehaze", "sr_x2"])
def test_one_training_step_of_every_attacker_stays_on_the_teachers_device(teachers, task, name):
    session = teachers[task]
    attack = attacker(attack_for(task), name)
    attack = dataclasses.replace(attack, steps=1, queries=4, batch=2, patch=16, variants=1,
                                 lowpass_sigma=attack.lowpass_sigma or 1.0)  # the low-pass too, for SR
    defense = Setting(layers=(session.default_layer,), k=1, a=2.0)
    with OneDevicePerOp():
        *_, last = distill(session.model, session.task, [(defense.clean, 0), (defense, 0)], attack, every=1)
    assert all(p.device == META for student in last.students for p in student.parameters())


@pytest.mark.parametrize("layout", ["channel", "spatial"])
def test_a_look_stays_on_the_teachers_device(teachers, layout):
    session = teachers["dehaze"]
    image = np.random.default_rng(0).random((32, 48, 3), dtype=np.float32)
    scene = scenes.make_scene(TASKS["dehaze"], image, already_degraded=False, seed=0)
    with OneDevicePerOp():
        view = looks.look(session.model, scene, Setting(layers=(session.default_layer,), layout=layout, k=2, a=3.0))
    assert view.clean.shape == view.defended.shape == image.shape
