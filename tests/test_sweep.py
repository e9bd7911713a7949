"""The sweep engine: rows run as Ray tasks on this machine, stream into the teacher's CSV, and a
sweep stopped after its first row trains only the missing row when run again. Rows measured on another kind of
CPU: one is measured again here, and only where the teacher's part agrees to float rounding and the students
within the noise floor does this machine's fingerprint become their recipe."""
import pandas as pd
import pytest
from helpers import frame, rows

from app.attack.attackers import INFORMED
from app.attack.distill import Attack
from app.defense.setting import Setting
from app.study import field, informed, recipe, runner
from app.study.crosscheck import SEEDS_APART, crosscheck
from app.study.engine import Store, Workers, clean_key, ray_session, row_key, run_rows
from app.study.findings import noise_floors, summarise
from app.study.protocol import Pairs, Row, clean_student_scores, measure
from app.study.recipe import recipe_of
from app.study.runner import after_search
from app.study.stages import Search


pytestmark = pytest.mark.benchmarks  # rows are scored on the benchmark pairs
TINY = Attack(steps=3, queries=8, batch=2, patch=32)
ROWS = [Row("dehaze", "dehaze", "screen", "asvp", Setting(layers=("dec1",), k=1, a=a), TINY, Pairs(n=1, crop=64))
        for a in (2.0, 3.0)]
SEARCH = Search("dehaze", "dehaze", TINY, ROWS[0].pairs, ["dec1"], quick=False)


@pytest.fixture(scope="module")
def ray():
    with ray_session(None, threads=1) as session:
        yield session


class StoppedAfterFirstRow(Store):
    """A store whose sweep is interrupted (as by Ctrl-C) right after the first row is on file."""

    def add(self, teacher, rows):
        super().add(teacher, rows)
        raise KeyboardInterrupt


class Counting(Store):
    added = 0

    def add(self, teacher, rows):
        super().add(teacher, rows)
        self.added += len(rows)


def test_a_stopped_sweep_resumes_with_only_the_missing_row(ray, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_rows(ray, ROWS, [0], StoppedAfterFirstRow(tmp_path))
    first = pd.read_csv(tmp_path / "sweep_dehaze.csv")
    assert len(first) == 1 and first.key[0] in {row_key(row, 0) for row in ROWS}

    store = Counting(tmp_path)
    store.load("dehaze", "dehaze")
    rows = run_rows(ray, ROWS, [0], store)
    assert store.added == 1  # the row on file was not trained again
    assert [r["key"] for r in rows] == [row_key(row, 0) for row in ROWS]  # in the order asked
    assert [r["a"] for r in rows] == [2.0, 3.0] and rows[0]["student_clean_psnr"] == rows[1]["student_clean_psnr"]
    on_file = pd.read_csv(tmp_path / "sweep_dehaze.csv")
    assert len(on_file) == 2 and on_file.iloc[0].equals(first.iloc[0])  # the first row kept as it was
    assert set(on_file.clean_key) == {clean_key(ROWS[0], 0)}  # one clean student, shared by both rows


def test_rows_reach_the_file_one_seed_at_a_time_and_measure_what_a_whole_row_does(ray, tmp_path):
    (tmp_path / "split").mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_rows(ray, ROWS[:1], [0, 1], StoppedAfterFirstRow(tmp_path / "split"))
    assert len(pd.read_csv(tmp_path / "split" / "sweep_dehaze.csv")) == 1  # one seed stored, one lost in flight
    split = Counting(tmp_path / "split")
    split.load("dehaze", "dehaze")
    resumed = run_rows(ray, ROWS[:1], [0, 1], split)
    assert [r["seed"] for r in resumed] == [0, 1] and split.added == 1  # in the order asked
    with recipe.one_thread():  # as the Ray tasks ran
        whole = measure(ROWS[0], [0, 1], *(clean_student_scores(ROWS[0], seed) for seed in (0, 1)))
    measured = ("seed", "student_psnr", "student_clean_psnr", "teacher_psnr", "served_rms")
    assert [[r[m] for m in measured] for r in whole] == [[r[m] for m in measured] for r in resumed]


def test_rows_of_another_recipe_or_teacher_are_dropped_on_load(tmp_path):
    fresh = dict(key="k1", recipe=recipe_of("dehaze", "dehaze"), teacher_sha="stale-weights", student_clean_psnr=1.0,
                 student_clean_ssim=0.5, clean_key="c1")
    pd.DataFrame([fresh, dict(fresh, key="k2", recipe="old-code")]).to_csv(tmp_path / "sweep_dehaze.csv", index=False)
    store = Store(tmp_path)
    store.load("dehaze", "dehaze")
    assert store.done("dehaze") == set() and not (tmp_path / "sweep_dehaze.csv").exists()


def test_a_row_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown row kind 'jpeg'"):
        Row("dehaze", "dehaze", "baselines", "jpeg", ROWS[0].defense, TINY)


def test_rows_score_students_and_teacher_against_the_clean_teachers_answer(ray, tmp_path):
    weak, strong = run_rows(ray, ROWS, [0], Store(tmp_path))
    for row in (weak, strong):
        for who in ("input", "student_clean", "student"):
            assert 5 < row[f"{who}_fidelity_psnr"] < 60 and 0 < row[f"{who}_fidelity_ssim"] <= 1
    assert weak["student_clean_fidelity_psnr"] == strong["student_clean_fidelity_psnr"]  # the shared clean twin
    assert strong["teacher_fidelity_psnr"] < weak["teacher_fidelity_psnr"]  # a = 3 moves the answers further


def test_a_file_from_before_fidelity_gains_the_columns_and_its_clean_twin_trains_again(ray, tmp_path):
    run_rows(ray, ROWS[:1], [0], Store(tmp_path))
    path = tmp_path / "sweep_dehaze.csv"
    old = pd.read_csv(path)
    old.drop(columns=[c for c in old if "fidelity" in c]).to_csv(path, index=False)
    store = Counting(tmp_path)
    store.load("dehaze", "dehaze")
    assert store.clean("dehaze") == {}  # no clean scores to reuse: they lack the fidelity
    run_rows(ray, ROWS, [0], store)
    on_file = pd.read_csv(path)
    assert store.added == 1 and set(on_file.columns) == set(old.columns)
    assert on_file.student_clean_fidelity_psnr.isna().tolist() == [True, False]
    assert on_file.student_clean_psnr[1] == old.student_clean_psnr[0]  # the same clean twin, trained again


def test_after_the_search_informed_attackers_and_field_students_meet_its_settings_under_their_own_fingerprints(
        ray, tmp_path):
    exposed = dict(placement="exposed", attack="feature", attacker="feature L1 x1", a=100.0)
    sweeps = Store(tmp_path)
    sweeps.rows["dehaze"] = frame(rows(exposed, 0.0, -3.0), rows({"a": 3.0}, -0.05, -1.5)).to_dict("records")
    search = Search("dehaze", "dehaze", TINY, Pairs(n=1, crop=64), ["dec1"], quick=False)
    aware, long = informed.store(tmp_path), field.store(tmp_path)
    at_picks, elsewhere = informed.missing([search], [0, 1, 2], sweeps, aware)
    assert at_picks.startswith("12 informed student pairs, at most ") and elsewhere == ""  # two picks, two attackers, 3 seeds
    assert field.missing([search], [0, 1, 2], sweeps, long, steps=4).startswith("12 field-stage student pairs")
    after_search(ray, [search], [0, 1, 2, 3], sweeps, aware, long, Workers(), steps=4)
    assert not (tmp_path / "sweep_dehaze.csv").exists()  # the search's own rows were only read
    found = pd.read_csv(tmp_path / "informed_dehaze.csv")
    assert set(found.stage) == {"informed"} and set(found.attacker) == set(INFORMED) and set(found.seed) == {0, 1, 2}
    assert set(zip(found.placement, found.a)) == {("exposed", 100.0), ("inline", 3.0)}
    assert set(found.recipe) == {recipe_of("dehaze", "dehaze", informed.ATTACKERS)} != {recipe_of("dehaze", "dehaze")}
    trained = pd.read_csv(tmp_path / "field_dehaze.csv")
    assert set(trained.budget) == {4} and set(trained.seed) == {0, 1, 2} and set(trained.stage) == {"field"}
    assert {(r.placement, r.a, r.attacker, r.student.startswith("field")) for r in trained.itertuples()} == {
        (p, a, who, f) for p, a, who in (("exposed", 100.0, "feature L1 x1"), ("inline", 3.0, "output L1"))
        for f in (True, False)}  # the answer table's two picks, each with the attacker it was found with
    assert set(trained.recipe) == {recipe_of("dehaze", "dehaze", field=True)} != {recipe_of("dehaze", "dehaze")}
    assert informed.missing([search], [0, 1, 2], sweeps, aware) == ("", "")
    assert field.missing([search], [0, 1, 2], sweeps, long, steps=4) == ""


def test_the_field_stage_takes_the_largest_drops_that_are_effects(monkeypatch, tmp_path):
    """A pick within the noise floor (1 dB here) has no damage for a field student to carry; of the rest, the
    largest drops in noise floors come first, and SETTINGS of them are fielded (and the report, which tells a pick
    the stage will reach from one it leaves out, ranks them alike)."""
    exposed = dict(placement="exposed", attack="feature", attacker="feature L1 x1", a=100.0)
    search = Search("dehaze", "dehaze", TINY, Pairs(n=1, crop=64), ["dec1"], quick=False)
    sweeps = Store(tmp_path)
    threats = {"inline": "in-line, output KD", "exposed": "exposed, feature KD"}

    def fielded(inline_drop: float) -> list[tuple[str, str]]:
        sweeps.rows["dehaze"] = frame(rows(exposed, 0.0, -3.0), rows({"a": 3.0}, -0.05, inline_drop)).to_dict("records")
        chosen = [(row.defense.placement, row.attack.label) for row in field.wanted([search], sweeps)[0]]
        reported = field.fielded(summarise(pd.DataFrame(sweeps.rows["dehaze"])))
        assert reported == {("dehaze", threats[placement]) for placement, _ in chosen}
        return chosen

    assert fielded(-0.5) == [("exposed", "feature L1 x1")]
    assert fielded(-1.5) == [("exposed", "feature L1 x1"), ("inline", "output L1")]  # 3 floors down, then 1.5
    assert fielded(-4.0) == [("inline", "output L1"), ("exposed", "feature L1 x1")]
    monkeypatch.setattr(field, "SETTINGS", 1)
    assert fielded(-1.5) == [("exposed", "feature L1 x1")]


def test_after_the_search_the_budget_curve_extended_comes_before_the_informed_attackers_elsewhere(monkeypatch,
                                                                                                    tmp_path):
    """The informed attackers at the answer table's picks, the field students, the quick ones at their budget
    (hours), and last the informed attackers at every other setting they measure (a day of two cores)."""
    exposed = dict(placement="exposed", attack="feature", attacker="feature L1 x1")
    sweeps = Store(tmp_path)
    sweeps.rows["dehaze"] = frame(rows({**exposed, "a": 100.0}, 0.0, -3.0), rows({**exposed, "a": 50.0}, 0.0, -2.0),
                                  rows({"a": 3.0}, -0.05, -1.5)).to_dict("records")
    search = Search("dehaze", "dehaze", TINY, Pairs(n=1, crop=64), ["dec1"], quick=False)
    ran = []
    monkeypatch.setattr(runner, "run_rows", lambda _ray, rows, seeds, store, workers, desc: ran.append(
        (desc, sorted({(row.defense.a, row.attack.student.startswith("field")) for row in rows}))))
    runner.after_search(None, [search], [0, 1, 2], sweeps, informed.store(tmp_path), field.store(tmp_path), Workers())
    assert ran == [("informed", [(3.0, False), (100.0, False)]), ("field", [(3.0, True), (100.0, True)]),
                   ("field", [(3.0, False), (100.0, False)]), ("informed", [(50.0, False)])]


@pytest.fixture(scope="module")
def elsewhere(ray, tmp_path_factory):
    """Three seeds of a row as another machine stored them: its recipe is not this machine's fingerprint."""
    out = tmp_path_factory.mktemp("elsewhere")
    run_rows(ray, ROWS[:1], [0, 1, 2], Store(out))
    return pd.read_csv(out / "sweep_dehaze.csv").sort_values("seed").assign(recipe="measured-elsewhere")


@pytest.fixture
def aliases(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "ALIASES", tmp_path / "recipe_aliases.csv")
    return recipe.ALIASES


def stored(rows: pd.DataFrame, out) -> None:
    out.mkdir(exist_ok=True)
    rows.to_csv(out / "sweep_dehaze.csv", index=False)


def test_rows_that_measure_the_same_here_keep_their_recipe(elsewhere, aliases, tmp_path):
    stored(elsewhere, tmp_path / "out")
    store = Store(tmp_path / "out")
    store.load("dehaze", "dehaze", keep_stale=True)
    assert store.rows["dehaze"] == []  # stale here by the fingerprint alone

    said = list(crosscheck([SEARCH], tmp_path / "out"))
    assert said[0].endswith("the same recipe, alias recorded") and "students within 0.000 dB" in said[0]
    assert pd.read_csv(aliases).recipe.tolist() == ["measured-elsewhere"]
    assert recipe.recipe_of("dehaze", "dehaze") == "measured-elsewhere"
    assert store.load("dehaze", "dehaze") == 0 and len(store.rows["dehaze"]) == 3  # current: the search resumes
    assert next(crosscheck([SEARCH], tmp_path / "out")).startswith("sweep_dehaze.csv: current here")


@pytest.mark.parametrize("column,change", [("teacher_psnr", 0.001), ("student_psnr", 10.0)])
def test_rows_that_measure_otherwise_stay_stale(elsewhere, aliases, tmp_path, column, change):
    moved = elsewhere.copy()
    moved[column] += change  # a recipe that computes other numbers moves every seed of the row
    stored(moved, tmp_path / "out")
    said = list(crosscheck([SEARCH], tmp_path / "out"))
    assert said[0].endswith("the recipe differs; no alias") and not aliases.exists()
    assert recipe.recipe_of("dehaze", "dehaze") != "measured-elsewhere"


def test_a_row_whose_students_vary_with_the_seed_is_judged_by_its_own_spread(elsewhere, aliases, tmp_path):
    """Students taught from features amplified a hundredfold, or field students, vary with their seed far more
    than the clean quick students the noise floor is made of: the re-measured student may differ as much."""
    floor = noise_floors(elsewhere)["dehaze"]
    wide = elsewhere.copy()
    wide.student_psnr += wide.seed.map({0: 2, 1: -6, 2: 0}) * SEEDS_APART * floor  # the re-measured seed 0 moved too
    stored(wide, tmp_path / "out")
    said = next(crosscheck([SEARCH], tmp_path / "out"))
    assert said.endswith("the same recipe, alias recorded"), said
    assert "student_psnr" in said and "the row's spread over its 3 seed(s) on file" in said
