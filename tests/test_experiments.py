"""The quick sweep runs end to end over a task's teachers of two families, writes every artefact the
report promises, and never touches the stored results."""
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from app.experiments import main, planned_work
from app.report import defaults


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.benchmarks
@pytest.mark.slow
def test_quick_sweep_end_to_end_leaves_the_stored_results_alone(request):
    before = git_status()
    run = subprocess.run([sys.executable, "-m", "app.experiments", "--tasks", "sr_x4", "--quick", "--budget", "5",
                          "--seeds", "0", "1", "2", "--threads", "2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert git_status() == before  # nothing under results/ (or anywhere else in the checkout) changed
    out = Path(re.search(r"writing to (\S+)", run.stdout).group(1))
    assert ROOT not in out.resolve().parents
    request.addfinalizer(lambda: shutil.rmtree(out, ignore_errors=True))
    hooks = {"sr_x4": {"early": "enc2", "late": "dec1"}, "sr_x4-compact": {"early": "net.body.5", "late": "net.body.25"}}
    planned, _passes = planned_work(quick=True, seeds=3)
    for teacher, roles in hooks.items():
        rows = list(csv.DictReader(open(out / f"sweep_{teacher}.csv")))
        defended = [r for r in rows if not (r["stage"] == "attackers" and r["attack"] == "output")]  # others: copies
        clean = {(r["attack"], r["layer"], r["seed"]) for r in rows}
        assert len(defended) + len(clean) == planned  # what --plan promised is what the run trained
        assert {r["stage"] for r in rows} == {"screen", "attackers", "baselines"}
        assert {r["seed"] for r in rows} == {"0", "1", "2"} and {r["teacher"] for r in rows} == {teacher}
        assert {r["defense"] for r in rows} >= {"asvp", "asvp-random", "asvp-bottom", "output-noise"}
        screen = [r for r in rows if r["stage"] == "screen"]
        assert {(r["layer_role"], r["layer"]) for r in screen} == set(roles.items())  # the same roles, each body's layers
        assert (out / f"tradeoff_{teacher}.png").stat().st_size > 5000
        swept = json.loads((out / "defaults.json").read_text())[teacher]
        assert swept["layer"] in roles.values() and swept["layout"] in ("channel", "spatial") and swept["k"] >= 1
    report = (out / "RESULTS.md").read_text()
    assert "## Families compared" in report and "**Real-ESRGAN Compact (SRVGGNet)** (`sr_x4-compact`)" in report
    assert "| channel @ late, k=1, a=3, inline |" in report  # a screen setting by role, side by side
    assert "### sr_x4: U-Net (ASVP Lab)" in report and "### sr_x4-compact: Real-ESRGAN Compact" in report
    assert report.count("**Verdict.**") == 2 and "hooks: early = `net.body.5`, late = `net.body.25`" in report


def test_a_quick_run_may_not_name_the_stored_results(capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--out", str(ROOT / "results")])
    assert "--quick never writes results/" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [(["--tasks", "sr_x3"], "unknown task sr_x3"),
                                          (["--tasks", "dehaze", "--teachers", "sr_x2-swinir"],
                                           "no bundled teacher sr_x2-swinir among the tasks dehaze")])
def test_a_sweep_of_nothing_is_refused_with_the_reason(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["--quick"] + argv)
    assert message in capsys.readouterr().err


def test_defaults_take_the_best_ratio_among_affordable_valid_settings():
    rows = pd.DataFrame([
        # (layer, k, teacher dPSNR, teacher dSSIM, student dPSNR, learned)
        ("dec1", 4, -5.0, -0.01, -5.0, True),  # ratio 1.0, but it costs the teacher 5 dB
        ("enc2", 1, -0.5, -0.01, -0.3, True),  # ratio 0.6, affordable: the pick
        ("enc2", 4, -0.2, -0.01, -2.0, False),  # ratio 10, but the clean student never learned
        ("dec1", 1, -0.05, -0.01, 0.01, True),  # affordable, no protection
        ("dec1", 2, +0.3, -0.05, -3.0, True),  # ratio 30 and PSNR up, but SSIM pays 0.05
    ], columns=["layer", "k", "t_dpsnr", "t_dssim", "s_dpsnr", "learned"])
    s = rows.assign(task="t", teacher="t", stage="screen", layout="channel", a=2.0, tau="-",
                    protection=-rows.s_dpsnr / (-rows.t_dpsnr).clip(lower=0.1))
    assert defaults(s)["t"] == dict(layer="enc2", layout="channel", k=1, a=2.0, tau=None)
    # nothing affordable: the cheapest valid setting in PSNR
    s.loc[1, "t_dpsnr"], s.loc[3, "t_dpsnr"], s.loc[4, "t_dpsnr"] = -3.0, -2.0, -2.5
    assert defaults(s)["t"]["layer"] == "dec1" and defaults(s)["t"]["k"] == 1


def test_the_plan_counts_students_and_estimates_time_before_training_any(capsys):
    main(["--plan", "--quick", "--budget", "5", "--tasks", "sr_x4", "--teachers", "sr_x4", "--seeds", "0", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    n, _passes = planned_work(quick=True, seeds=2)
    assert re.fullmatch(rf"sr_x4: {n} students of 5 steps, about \d+\.\d min", lines[0])
    assert re.fullmatch(rf"total: {n} students, about \d+\.\d min on cpu with \d+ thread\(s\)", lines[-1])
