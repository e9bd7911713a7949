"""Teacher passes filed on disk (app.study.passes): a worker that never asked a pass, or a search resumed later,
reads back the very tensors another asked, and only what the key names can be read back."""
import os

import pytest
import torch
from safetensors.torch import load_file

from app.attack.distill import Attack
from app.defense.setting import Setting
from app.study import passes, protocol
from app.study.cli import main
from app.study.protocol import Pairs, Row, clean_answers, clean_student_scores, measure, teacher_on


TINY = Attack(steps=3, queries=8, batch=2, patch=32)
CPU = torch.device("cpu")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(passes, "FOLDER", tmp_path)
    return tmp_path


def new_worker() -> None:
    """A worker of its own: nothing kept in memory from other tests or rows."""
    protocol._served.clear()
    clean_answers.cache_clear()


@pytest.fixture
def fresh():
    new_worker()
    yield
    new_worker()  # the passes read back from this test's folder stay out of later tests


def asking(tensor: torch.Tensor, calls: list):
    def ask():
        calls.append(1)
        return {"answers": tensor}
    return ask


@pytest.mark.benchmarks
def test_a_row_measured_by_a_worker_that_never_asked_reads_the_filed_passes_and_equals_the_first(folder, fresh,
                                                                                                  monkeypatch):
    monkeypatch.setattr(passes, "KEEP_AFTER_S", 0.0)  # every pass counts as slow
    row = Row("dehaze", "dehaze", "screen", "asvp", Setting(layers=("dec1",), k=1, a=10.0), TINY, Pairs(n=1, crop=64))
    first = measure(row, [0], clean_student_scores(row, 0))
    filed = list(folder.glob("*/*.safetensors"))
    assert len(filed) == 3  # the clean answers, the clean setting's features and the defended answers
    new_worker()
    session, _, _ = teacher_on("dehaze", "dehaze", row.pairs, CPU)
    batches = []
    handle = session.model.register_forward_hook(lambda _m, _i, out: batches.append(out.shape[0]))
    try:
        again = measure(row, [0], clean_student_scores(row, 0))
    finally:
        handle.remove()
    assert TINY.queries not in batches  # no pass on the attacker's queries was asked again
    assert again == first


def test_a_quick_pass_is_asked_again_and_costs_no_fingerprint(folder, monkeypatch):
    def no_fingerprint(*_):
        raise AssertionError("a light teacher's pass needs no key")
    monkeypatch.setattr(passes, "fingerprint_here", no_fingerprint)
    calls = []
    for _ in range(2):
        passes.kept_pass("dehaze", "dehaze", dict(seed=0), asking(torch.ones(2), calls), CPU)
    assert len(calls) == 2 and not any(folder.iterdir())


def test_a_pass_is_filed_apart_for_each_recipe_machine_and_question(folder, monkeypatch):
    recipe, kind = ["r1"], ["cpu kind 1"]
    monkeypatch.setattr(passes, "fingerprint_here", lambda *_: recipe[0])
    monkeypatch.setattr(passes, "machine", lambda: kind[0])
    first = passes.pass_file("dehaze", "dehaze", dict(seed=0))
    assert passes.pass_file("dehaze", "dehaze", dict(seed=1)) != first
    assert passes.pass_file("derain", "derain", dict(seed=0)) != first
    recipe[0] = "r2"
    assert passes.pass_file("dehaze", "dehaze", dict(seed=0)) != first
    recipe[0], kind[0] = "r1", "cpu kind 2"
    assert passes.pass_file("dehaze", "dehaze", dict(seed=0)).parent != first.parent
    kind[0] = "cpu kind 1"
    assert passes.pass_file("dehaze", "dehaze", dict(seed=0)) == first


def test_a_slow_pass_is_read_back_bit_for_bit_and_an_unreadable_one_is_asked_again(folder, monkeypatch):
    monkeypatch.setattr(passes, "fingerprint_here", lambda *_: "r1")
    monkeypatch.setattr(passes, "KEEP_AFTER_S", 0.0)
    answers, calls = torch.randn(3, 5, dtype=torch.float32), []
    asked = passes.kept_pass("dehaze", "dehaze", dict(seed=0), asking(answers, calls), CPU)
    read = passes.kept_pass("dehaze", "dehaze", dict(seed=0), asking(answers * 0, calls), CPU)
    assert len(calls) == 1 and asked["answers"] is answers and torch.equal(read["answers"], answers)
    path = passes.pass_file("dehaze", "dehaze", dict(seed=0))
    path.write_bytes(b"cut short")
    again = passes.kept_pass("dehaze", "dehaze", dict(seed=0), asking(answers + 1, calls), CPU)
    assert len(calls) == 2 and torch.equal(again["answers"], answers + 1)
    assert torch.equal(load_file(path)["answers"], answers + 1)  # filed anew
    assert not list(folder.glob("*/*.partial"))


def test_the_least_recently_read_passes_go_first_and_the_newest_stays(folder):
    shelves = [folder / "a", folder / "b"]
    files = []
    for n, shelf in enumerate(shelves * 2):
        shelf.mkdir(exist_ok=True)
        files.append(shelf / f"{n}.safetensors")
        files[-1].write_bytes(b"x" * 100)
        os.utime(files[-1], (1000 + n, 1000 + n))
    passes.keep_within(folder, 250)
    assert [f.exists() for f in files] == [False, False, True, True]
    passes.keep_within(folder, 10)
    assert [f.exists() for f in files] == [False, False, False, True]


def test_no_pass_is_filed_under_a_limit_of_zero(folder, monkeypatch):
    monkeypatch.setattr(passes, "fingerprint_here", lambda *_: "r1")
    monkeypatch.setattr(passes, "KEEP_AFTER_S", 0.0)
    monkeypatch.setenv("ASVP_PASSES_GB", "0")
    calls = []
    for _ in range(2):
        passes.kept_pass("dehaze", "dehaze", dict(seed=0), asking(torch.ones(2), calls), CPU)
    assert len(calls) == 2 and not list(folder.glob("*/*.safetensors"))


@pytest.mark.parametrize("limit", ["twenty", "-1", "nan", ""])
def test_a_mistyped_limit_stops_the_search_before_it_starts_with_the_reason(monkeypatch, capsys, limit):
    monkeypatch.setenv("ASVP_PASSES_GB", limit)
    with pytest.raises(SystemExit):
        main(["--quick", "--tasks", "dehaze", "--plan"])
    assert f"ASVP_PASSES_GB must be a number of gigabytes (0 files no teacher pass), got {limit!r}" in \
        capsys.readouterr().err
