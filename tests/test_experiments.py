"""The quick sweep runs end to end and writes every artefact the report promises."""
import csv
import json

import pandas as pd

from app.experiments import main
from app.report import defaults


def test_quick_sweep_end_to_end(tmp_path):
    main(["--tasks", "sr_x4", "--quick", "--budget", "5", "--seeds", "0", "1", "2", "--threads", "2",
          "--out", str(tmp_path)])
    rows = list(csv.DictReader(open(tmp_path / "sweep_sr_x4.csv")))
    stages = {r["stage"] for r in rows}
    assert stages == {"screen", "attackers", "baselines"}
    assert {r["seed"] for r in rows} == {"0", "1", "2"}
    assert {r["family"] for r in rows} >= {"asvp", "asvp-random", "asvp-bottom", "output-noise"}
    report = (tmp_path / "RESULTS.md").read_text()
    assert "## sr_x4" in report and "**Verdict.**" in report and "tradeoff_sr_x4.png" in report
    assert (tmp_path / "tradeoff_sr_x4.png").stat().st_size > 5000
    defaults = json.loads((tmp_path / "defaults.json").read_text())["sr_x4"]
    assert defaults["layout"] in ("channel", "spatial") and defaults["k"] >= 1


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
