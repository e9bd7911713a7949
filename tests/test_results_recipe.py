"""The committed results are the search's rows, and `python -m app.experiments` resumes from them: it
drops every row whose recipe fingerprint (app.study.recipe: what the student recipe computes) or teacher
weights differ from the checkout's. A change of numbers anywhere on the recipe's path fails here first;
a refactor that changes none keeps every row."""
import numpy as np
import pandas as pd
import pytest
from helpers import ROOT

import app.attack.distill
import app.data.sources
from app.study import field, informed, recipe
from app.study.cli import main
from app.study.engine import stamp
from app.study.recipe import fingerprint


RESULTS = ROOT / "results"
pytestmark = pytest.mark.benchmarks  # the plan walks the stored rows, scored on the benchmark pairs


@pytest.mark.slow
def test_the_committed_rows_are_current_and_the_plan_trains_none_of_them(capsys):
    searched = sorted(path.stem.split("_", 1)[1] for path in RESULTS.glob("sweep_*.csv"))
    assert len(searched) >= 13, "results/ holds no search rows"
    files = [RESULTS / f"{kind}_{teacher}.csv" for teacher in searched for kind in ("sweep", "costs")]
    files += sorted(RESULTS.glob("notheft_*.csv"))  # the no-theft stage, where it has run
    files += sorted(RESULTS.glob(f"{informed.KIND}_*.csv"))  # the informed attackers: a fingerprint of their own
    files += sorted(RESULTS.glob(f"{field.KIND}_*.csv"))  # the field stage's: one that covers both its students
    for path in files:
        rows = pd.read_csv(path)
        teacher = path.stem.split("_", 1)[1]
        assert len(set(rows.task)) == 1 if "task" in rows else True
        task = rows.task[0] if "task" in rows else pd.read_csv(RESULTS / f"sweep_{teacher}.csv").task[0]
        group = path.stem.split("_", 1)[0]
        expected = stamp(task, teacher, *([informed.ATTACKERS] if group == informed.KIND else []),
                         field=group == field.KIND)
        assert set(rows.recipe) == {expected["recipe"]}, (
            f"{path.name} was measured with a student recipe that computes other numbers than this checkout's: "
            "undo the change, or rerun the search on purpose (python -m app.experiments)")
        assert set(rows.teacher_sha) == {expected["teacher_sha"]}, f"{path.name}: its teacher was retrained"
    under_way = []
    for teacher in searched:  # one at a time: a search under way stops a plan of several at its missing rows
        main(["--plan", "--teachers", teacher])
        said = capsys.readouterr().out
        assert "\n0 current rows on file that no stage reached so far asks for\n" in said  # no row left behind
        if "to train next:" in said:  # its stages stop at missing rows (informed students may follow a complete one)
            under_way.append(teacher)
    assert len(searched) - len(under_way) >= 13, under_way  # every other teacher's search complete


def shifted_resize(img, max_side=512, multiple=1):
    """app.data.images.cap_size with its output one pixel narrower: a change of numbers."""
    out = ORIGINAL(img, max_side, multiple)
    return out[:, :-1] if max(img.shape[:2]) > max_side else out


def renamed_resize(img, max_side=512, multiple=1):
    """app.data.images.cap_size under another name: a change of text alone."""
    return ORIGINAL(img, max_side, multiple)


ORIGINAL = app.data.sources.cap_size


@pytest.mark.parametrize("replacement,changes", [(shifted_resize, True), (renamed_resize, False)])
def test_the_fingerprint_follows_numbers_not_names(monkeypatch, replacement, changes):
    before = fingerprint("dehaze", "dehaze")
    caches = (app.data.sources.clean_image, app.data.sources.held_out_image, app.attack.distill.query_pairs,
              recipe._teacher_numbers, recipe._asked)  # what the run computed once per process
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setattr(app.data.sources, "cap_size", replacement)
    try:
        assert (fingerprint("dehaze", "dehaze") != before) == changes
    finally:
        for cache in caches:
            cache.cache_clear()
    assert np.isfinite(app.data.sources.clean_image("monarch")).all()
