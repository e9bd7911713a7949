"""The quick sweep runs end to end and writes every artefact the report promises."""
import csv
import json

from app.experiments import main


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
