"""Long students filed as they train (app.attack.resume, app.study.resumes): a run stopped part way goes on from its
last filing and ends with the student the whole run makes, bit for bit; a finished one trains no step again; a file
it cannot use is not used."""
import pytest
import torch

import app.attack.distill
from app.attack.distill import Attack, FieldAttack, asked, taught
from app.attack.resume import Resumable
from app.defense.setting import Setting
from app.study import resumes
from app.study.protocol import Pairs, Row, clean_student_scores
from app.teachers.sessions import session_teacher


SMALL = dict(steps=8, queries=8, patch=16, batch=2)
EXPOSED = Setting(layers=("enc1",), k=1, a=100.0, placement="exposed")


@pytest.fixture(scope="module")
def sr_x4():
    return session_teacher("sr_x4", "sr_x4", budget=None)


def weights(progress) -> list[torch.Tensor]:
    return list(progress.students[0].state_dict().values())


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))


def stopped_at(run, step: int) -> None:
    """Train `run` (progress every step) until `step`, then drop it, as a stopped search does."""
    for progress in run:
        if progress.step == step:
            run.close()
            return


@pytest.mark.parametrize("attack", [Attack(kind="feature", **SMALL), FieldAttack(kind="fitnet", **SMALL)],
                         ids=["quick feature-KD student", "field FitNet student"])
def test_a_run_stopped_part_way_goes_on_from_its_last_filing_to_the_whole_runs_student(sr_x4, tmp_path, attack):
    served = asked(sr_x4.model, sr_x4.task, EXPOSED, attack, 3)
    *_, whole = taught(sr_x4.task, [served], attack, every=1)
    at = Resumable(tmp_path / "state.pt", every=3)
    stopped_at(taught(sr_x4.task, [served], attack, every=1, resumable=at), 7)
    again = list(taught(sr_x4.task, [served], attack, every=1, resumable=at))
    assert [p.step for p in again] == [6, 7, 8]  # from the last filing (step 6), not from the start
    assert same(again[-1], whole)
    assert not same(again[0], whole)  # what it resumed from was part way


@pytest.mark.parametrize("damage", ["cut short", "another budget"])
def test_a_filed_state_the_run_cannot_use_is_not_used(sr_x4, tmp_path, damage):
    attack = Attack(kind="feature", **SMALL)
    served = asked(sr_x4.model, sr_x4.task, EXPOSED, attack, 3)
    *_, whole = taught(sr_x4.task, [served], attack, every=1)
    at = Resumable(tmp_path / "state.pt", every=3)
    if damage == "cut short":
        stopped_at(taught(sr_x4.task, [served], attack, every=1, resumable=at), 7)
        at.path.write_bytes(at.path.read_bytes()[:1000])
    else:
        longer = Attack(kind="feature", **{**SMALL, "steps": 12})
        stopped_at(taught(sr_x4.task, [served], longer, every=1, resumable=at), 7)
    again = list(taught(sr_x4.task, [served], attack, every=1, resumable=at))
    assert again[0].step == 0 and same(again[-1], whole)


class Stop(Exception):
    """The search stopped while a student trained."""


@pytest.mark.benchmarks
def test_a_long_student_stopped_with_the_search_resumes_and_scores_as_the_whole_one(tmp_path, monkeypatch):
    monkeypatch.setattr(resumes, "FOLDER", tmp_path)
    monkeypatch.setattr(resumes, "EVERY", 4)
    monkeypatch.setattr(resumes, "FROM_STEPS", 10)
    attack = Attack(steps=10, queries=8, batch=2, patch=32)
    row = Row("dehaze", "dehaze", "screen", "asvp", Setting(layers=("dec1",), k=1, a=10.0), attack, Pairs(n=1, crop=64))
    whole = clean_student_scores(row, 0)  # filed as it trains (and the recipe's fingerprint made)
    for kept in tmp_path.iterdir():
        kept.unlink()  # as if never trained
    original, steps = app.attack.distill.pixel_loss, []

    def stopping(*args, **kwargs):  # the search stops during step 7
        steps.append(1)
        if len(steps) == 7:
            raise Stop
        return original(*args, **kwargs)

    monkeypatch.setattr(app.attack.distill, "pixel_loss", stopping)
    with pytest.raises(Stop):
        clean_student_scores(row, 0)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # filed at step 4
    steps.clear()
    resumed = clean_student_scores(row, 0)
    assert len(steps) == 6  # steps 5 to 10
    assert resumed == whole
    steps.clear()
    assert clean_student_scores(row, 0) == whole and not steps  # a clean twin scored before a stop trains no step
