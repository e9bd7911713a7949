"""The committed results are the search's rows, and `python -m app.experiments` resumes from them: it
drops every row whose student recipe or teacher weights differ from the checkout's (app.sweep.Store.load).
A change to one of app.sweep.RECIPE_FILES, even a docstring, would leave results/ describing another
recipe and make the next run retrain every student: this fails first, and names the way out."""
import pandas as pd
from conftest import ROOT

from app.sweep import RECIPE_FILES, recipe_version, teacher_checksum

RESULTS = ROOT / "results"


def test_the_committed_rows_were_measured_with_this_checkouts_recipe_and_teachers():
    files = sorted(RESULTS.glob("sweep_*.csv")) + sorted(RESULTS.glob("costs_*.csv"))
    assert files, "results/ holds no search rows"
    for path in files:
        rows = pd.read_csv(path)
        teacher = path.stem.split("_", 1)[1]
        assert set(rows.recipe) == {recipe_version()}, (
            f"{path.name} was measured with another student recipe than app/{', app/'.join(RECIPE_FILES)} give now: "
            "undo the change, or rerun the search on purpose (python -m app.experiments)")
        assert set(rows.teacher_sha) == {teacher_checksum(teacher)}, f"{path.name}: its teacher was retrained"
