"""The quick sweep runs end to end, writes every artefact the report promises, and never touches
the stored results."""
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

from app.experiments import main
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
    rows = list(csv.DictReader(open(out / "sweep_sr_x4.csv")))
    stages = {r["stage"] for r in rows}
    assert stages == {"screen", "attackers", "baselines"}
    assert {r["seed"] for r in rows} == {"0", "1", "2"}
    assert {r["family"] for r in rows} >= {"asvp", "asvp-random", "asvp-bottom", "output-noise"}
    report = (out / "RESULTS.md").read_text()
    assert "## sr_x4" in report and "**Verdict.**" in report and "tradeoff_sr_x4.png" in report
    assert (out / "tradeoff_sr_x4.png").stat().st_size > 5000
    swept = json.loads((out / "defaults.json").read_text())["sr_x4"]
    assert swept["layout"] in ("channel", "spatial") and swept["k"] >= 1


def test_a_quick_run_may_not_name_the_stored_results(capsys):
    with pytest.raises(SystemExit):
        main(["--quick", "--out", str(ROOT / "results")])
    assert "--quick never writes results/" in capsys.readouterr().err


def test_defaults_take_the_best_ratio_among_affordable_valid_settings():
    rows = pd.DataFrame([
        # (layer, k, teacher dPSNR, teacher dSSIM, student dPSNR, learned)
        ("dec1", 4, -5.0, -0.01, -5.0, True),  # ratio 1.0, but it costs the teacher 5 dB
        ("enc2", 1, -0.5, -0.01, -0.3, True),  # ratio 0.6, affordable: the pick
        ("enc2", 4, -0.2, -0.01, -2.0, False),  # ratio 10, but the clean student never learned
        ("dec1", 1, -0.05, -0.01, 0.01, True),  # affordable, no protection
        ("dec1", 2, +0.3, -0.05, -3.0, True),  # ratio 30 and PSNR up, but SSIM pays 0.05
    ], columns=["layer", "k", "t_dpsnr", "t_dssim", "s_dpsnr", "learned"])
    s = rows.assign(task="t", stage="screen", layout="channel", a=2.0, tau="-",
                    protection=-rows.s_dpsnr / (-rows.t_dpsnr).clip(lower=0.1))
    assert defaults(s)["t"] == dict(layer="enc2", layout="channel", k=1, a=2.0, tau=None)
    # nothing affordable: the cheapest valid setting in PSNR
    s.loc[1, "t_dpsnr"], s.loc[3, "t_dpsnr"], s.loc[4, "t_dpsnr"] = -3.0, -2.0, -2.5
    assert defaults(s)["t"]["layer"] == "dec1" and defaults(s)["t"]["k"] == 1
