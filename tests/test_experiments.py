"""The quick sweep runs end to end over a task's teachers of two families, writes every artefact the
report promises, and never touches the stored results."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT

import app.study.cli
from app.study.cli import main
from app.study.engine import stamp
from app.study.findings import defaults
from app.study.grid import grid


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


QUICK = ["--tasks", "sr_x4", "--quick", "--budget", "5", "--seeds", "0", "1", "2", "--threads", "2"]


@pytest.mark.benchmarks
@pytest.mark.slow
def test_quick_search_end_to_end_leaves_the_stored_results_alone(request):
    before = git_status()
    planned = subprocess.run([sys.executable, "-m", "app.experiments", "--plan", *QUICK], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr[-2000:]
    out = Path(re.search(r"writing to (\S+)", planned.stdout).group(1))  # a new temporary folder, left to the run
    request.addfinalizer(lambda: shutil.rmtree(out, ignore_errors=True))
    assert ROOT not in out.resolve().parents
    assert sorted(p.name for p in out.iterdir()) == ["costs_sr_x4-compact.csv", "costs_sr_x4.csv"]  # the run reuses them
    promised = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^(\S+): (\d+) screen students of 5 steps, at most "
                                                                  r"(\d+) before the budget curve", planned.stdout, re.M)}
    run = subprocess.run([sys.executable, "-m", "app.experiments", *QUICK, "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert git_status() == before  # nothing under results/ (or anywhere else in the checkout) changed
    assert set(promised) == {"sr_x4", "sr_x4-compact"}
    for teacher, late in {"sr_x4": "dec1", "sr_x4-compact": "net.body.25"}.items():
        rows = pd.read_csv(out / f"sweep_{teacher}.csv")
        assert set(rows.stage) == {"screen", "attackers", "baselines", "budget"} and set(rows.seed) == {0, 1, 2}
        assert set(rows.defense) == {"asvp", "asvp-random", "asvp-bottom", "output-noise"}
        assert set(rows.attacker) == {"output L1", "feature L1 x1", "FitNet MSE"}
        assert set(rows[rows.stage == "budget"].budget) == {5, 10} and set(rows.budget) == {5, 10}
        screen = rows[rows.stage == "screen"]
        first = screen[screen.seed == 0]
        clean = {(r.attacker, r.layer) for r in first.itertuples()}
        assert len(first) + len(clean) == promised[teacher][0]  # what --plan promised is what the screen trained
        before_curve = rows[rows.stage != "budget"]
        clean_all = {(r.attacker, r.layer, r.seed) for r in before_curve.itertuples()}
        assert len(before_curve) + len(clean_all) <= promised[teacher][1]
        assert set(screen.layer) == {late} and set(screen.placement) == {"inline", "exposed"}
        assert screen.seed.value_counts()[0] == len(first) >= screen.seed.value_counts().get(1, 0)  # the frontier only
        inline = rows[(rows.placement == "inline") & (rows.defense == "asvp")]
        assert (inline.served_rms > 0).all() and (rows[rows.placement == "exposed"].served_rms == 0).all()
        assert len(pd.read_csv(out / f"costs_{teacher}.csv")) == len(grid([late], quick=True))
        assert (out / f"tradeoff_{teacher}.png").stat().st_size > 5000
        assert (out / f"budget_{teacher}.png").stat().st_size > 5000
    summary = pd.read_csv(out / "summary.csv")
    assert json.loads((out / "defaults.json").read_text()) == json.loads(json.dumps(defaults(summary)))
    report = (out / "RESULTS.md").read_text()
    assert report.index("## The answer") < report.index("## The output-KD bound") < report.index("## sr_x4")
    for family in ("U-Net (ASVP Lab)", "Real-ESRGAN Compact (SRVGGNet)"):
        for threat in ("in-line, output KD", "in-line, feature KD", "exposed, feature KD"):
            assert f"| sr_x4 | {family} | {threat} |" in report
    assert "### sr_x4: U-Net (ASVP Lab)" in report and "### sr_x4-compact: Real-ESRGAN Compact" in report
    assert report.count("#### Budget curve") == 2


def test_a_quick_run_may_not_name_the_stored_results(capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--out", str(ROOT / "results")])
    assert "--quick, --teacher and --pairs never write results/" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [(["--tasks", "sr_x3"], "unknown task sr_x3"),
                                          (["--tasks", "dehaze", "--teachers", "sr_x2-swinir"],
                                           "no bundled or pretrained teacher sr_x2-swinir among the tasks dehaze")])
def test_a_sweep_of_nothing_is_refused_with_the_reason(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["--quick"] + argv)
    assert message in capsys.readouterr().err


def measured_elsewhere() -> pd.DataFrame:
    """A row of sr_x4 stamped with a recipe that no machine here fingerprints."""
    return pd.DataFrame([dict(key="k", teacher="sr_x4", **{**stamp("sr_x4", "sr_x4"), "recipe": "measured-elsewhere"})])


def test_a_run_that_would_drop_stale_rows_stops_first_and_keeps_them(capsys, tmp_path):
    """Rows measured on another kind of CPU look stale by their fingerprint alone: a run says so and drops none."""
    stale = measured_elsewhere()
    stale.to_csv(tmp_path / "sweep_sr_x4.csv", index=False)
    with pytest.raises(SystemExit):
        main(["--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "sweep_sr_x4.csv: 1 rows of another recipe or teacher than here" in err and "--crosscheck" in err
    assert pd.read_csv(tmp_path / "sweep_sr_x4.csv").equals(stale)  # nothing dropped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep_sr_x4.csv"]  # and nothing measured


def test_remeasuring_stale_rows_says_which_it_drops(capsys, tmp_path, monkeypatch):
    measured_elsewhere().to_csv(tmp_path / "sweep_sr_x4.csv", index=False)
    ran = []
    monkeypatch.setattr(app.study.cli, "run", lambda *args: ran.append(args))
    monkeypatch.setattr(app.study.cli, "write_report", lambda out: None)
    main(["--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--out", str(tmp_path),
          "--remeasure-stale"])
    assert "measuring again: sweep_sr_x4.csv: 1 rows of another recipe or teacher than here" in capsys.readouterr().out
    assert len(ran) == 1


def test_the_plan_counts_students_and_stores_the_costs_before_training_any(capsys, tmp_path):
    main(["--plan", "--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--seeds", "0", "1",
          "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:4] == [f"writing to {tmp_path}", "sr_x4: 0 rows on file are current, 0 stale",
                         "to train first: 2 no-theft students (the task's own attacker, no teacher)",
                         "0 current rows on file that no stage reached so far asks for"]
    assert re.fullmatch(r"to train next: \d+ student pairs of the screen stage \(later stages follow from their "
                        r"results\)", lines[4])
    assert re.fullmatch(r"sr_x4: \d+ screen students of 5 steps, at most \d+ before the budget curve and \d+ "
                        r"teacher passes, about \d+\.\d min", lines[5])
    assert re.fullmatch(r"total: at most \d+ students before the budget curve, about \d+\.\d min on cpu with \d+ "
                        r"thread\(s\) and one task at a time", lines[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs_sr_x4.csv"]  # the run that follows reuses them
    assert len(pd.read_csv(tmp_path / "costs_sr_x4.csv")) == len(grid(["dec1"], quick=True))
    # a current row that no stage asks for (its key changed in a refactor) is counted, not silently kept
    pd.DataFrame([dict(key="a-key-no-stage-makes", teacher="sr_x4", **stamp("sr_x4", "sr_x4"))]).to_csv(
        tmp_path / "sweep_sr_x4.csv", index=False)
    main(["--plan", "--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--seeds", "0", "1",
          "--out", str(tmp_path)])
    assert "1 current rows on file that no stage reached so far asks for" in capsys.readouterr().out
    # a stale row in any of the teacher's files is counted and its file named: the run would drop it
    measured_elsewhere().to_csv(tmp_path / "field_sr_x4.csv", index=False)
    main(["--plan", "--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--seeds", "0", "1",
          "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert "sr_x4: 1 rows on file are current, 1 stale" in lines
    assert any(line.startswith("field_sr_x4.csv: 1 rows of another recipe or teacher than here") for line in lines)
