"""A session to take away: every part lands in the zip, and an image the session lacks is left out."""
import json
import os
import zipfile

import numpy as np

from app.lab import export
from app.lab.export import METRICS_HEADER, session_zip


def test_the_zip_holds_settings_images_metrics_and_verdict_and_skips_a_missing_image(tmp_path):
    image = np.linspace(0, 1, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    path = session_zip(tmp_path / "s.zip", {"task": "dehaze", "seed": 3}, {"teacher": image, "ground_truth": None},
                       [["teacher", "20.00", "0.8000", ""]], "**Verdict.** none")
    with zipfile.ZipFile(path) as bundle:
        assert sorted(bundle.namelist()) == ["metrics.csv", "settings.json", "teacher.png", "verdict.md"]
        assert json.loads(bundle.read("settings.json")) == {"task": "dehaze", "seed": 3}
        assert bundle.read("metrics.csv").decode().splitlines() == [",".join(METRICS_HEADER), "teacher,20.00,0.8000,"]
        assert bundle.read("verdict.md").decode() == "**Verdict.** none\n"


def test_a_server_keeps_only_the_newest_exports(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "_exports", lambda: tmp_path)
    monkeypatch.setattr(export, "EXPORTS_KEPT", 3)
    paths = []
    for n in range(5):
        paths.append(export.new_export_path())
        paths[-1].write_bytes(b"zip")
        os.utime(paths[-1].parent, (n, n))  # made one after another
    assert [p.exists() for p in paths] == [False, False, True, True, True]  # the oldest went first
    assert all(p.name == "asvp-session.zip" for p in paths) and len(list(tmp_path.iterdir())) == 3
