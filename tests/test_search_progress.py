"""The search runs across sessions from the rows committed under results/search/. A resumed run drops
every row whose student recipe or teacher weights differ from the checkout's (app.sweep.Store.load),
so a change to one of app.sweep.RECIPE_FILES, even a docstring, would silently throw away hours of
students: this fails first, and names the way out."""
import pandas as pd
from conftest import ROOT

from app.sweep import RECIPE_FILES, recipe_version, teacher_checksum

IN_PROGRESS = ROOT / "results" / "search"


def test_the_search_in_progress_resumes_from_every_committed_row():
    for path in sorted(IN_PROGRESS.glob("*.csv")):
        rows = pd.read_csv(path)
        teacher = path.stem.split("_", 1)[1]
        assert set(rows.recipe) == {recipe_version()}, (
            f"{path.name} was measured with another student recipe than app/{', app/'.join(RECIPE_FILES)} give now: "
            "undo the change, or restart the search on purpose (delete results/search/)")
        assert set(rows.teacher_sha) == {teacher_checksum(teacher)}, f"{path.name}: its teacher was retrained"
