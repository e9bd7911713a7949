"""Students on cores of their own: the students one pass trains, with the teacher's hooks and the
process's thread count left as they were."""
import dataclasses
import threading
import time

import pytest
import torch
from helpers import SMALL_RUN, weights

from app.attack.attackers import attack_for
from app.attack.cores import core_pool, distill_on_cores, on_cores
from app.attack.distill import distill
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.teachers.loader import load_teacher


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("task,kind", [("dehaze", "feature"), ("sr_x2", "output")])
def test_students_on_cores_are_the_students_of_one_pass(task, kind, two_threads):
    """Both student families, within float rounding (one thread per student sums in another order
    than two); a strong perturbation, so a clean-taught student that saw a defended answer (hooks
    shared across threads) would stand out by far more."""
    teacher = load_teacher(task).model
    attack = dataclasses.replace(attack_for(task), kind=kind, **SMALL_RUN)
    defense = Setting(k=2, a=30.0, layers=("dec1",))
    runs = [(defense.clean, 1), (defense, 1), (defense, 2)]
    events = list(distill_on_cores(teacher, TASKS[task], runs, attack, every=3))
    assert [e.step for e in events] == [0, 3, 6] and all(len(e.students) == len(e.losses) == 3 for e in events)
    assert torch.get_num_threads() == 2  # the process's count, as it was
    *_, one_pass = distill(teacher, TASKS[task], runs, attack, every=attack.steps)
    mine, theirs = [weights(s) for s in events[-1].students], [weights(s) for s in one_pass.students]
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4)
    assert (theirs[0] - theirs[1]).abs().max() > 1e-2
    torch.testing.assert_close(torch.tensor(events[-1].losses), torch.tensor(one_pass.losses), rtol=1e-4, atol=0)


def test_the_pool_trains_on_one_thread_per_worker_and_leaves_the_process_count_alone(two_threads):
    def threads_after_a_parallel_op():  # a thread takes the process's count at its first parallel op
        torch.nn.functional.conv2d(torch.rand(1, 8, 64, 64), torch.rand(8, 8, 3, 3))
        return torch.get_num_threads()

    pool = core_pool()
    assert [pool.submit(threads_after_a_parallel_op).result() for _ in range(4)] == [1] * 4
    assert torch.get_num_threads() == 2 and threads_after_a_parallel_op() == 2


def test_a_background_pass_steps_only_while_no_other_pass_is_under_way(two_threads):
    events, stepped = iter([1, 2, 3]), []
    background = threading.Thread(target=lambda: stepped.extend(on_cores(events, background=True)))
    foreground = on_cores(iter([1, 2]))  # a click's student, one event taken: under way until it ends
    assert next(foreground) == 1
    background.start()
    time.sleep(0.5)
    assert stepped == []  # waiting for the cores
    assert list(foreground) == [2]
    background.join(timeout=10)
    assert stepped == [1, 2, 3]
