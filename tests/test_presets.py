"""Per-task starting points: read from the sweep's defaults file when asked, built-in otherwise."""
import json

import pytest

from app.distill import Attack
from app.families import FAMILIES
from app.presets import ATTACKS, DefenseDefaults, attack_for, preset
from app.tasks import TASKS


def test_swept_defaults_are_read_from_the_file_named(tmp_path):
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps({"dehaze": dict(layer="enc2", layout="spatial", k=4, a=3.0, tau=None),
                                "dehaze-nafnet": dict(layer="net.encoders.1", layout="channel", k=2, a=2.0)}))
    start = preset("dehaze", path=path)
    assert start.defense == DefenseDefaults(layer="enc2", layout="spatial", k=4, a=3.0)
    assert start.source == "swept (defaults.json, dehaze)"
    nafnet = preset("dehaze", FAMILIES["NAFNet"].title, path)  # any NAFNet starts from the bundled one's sweep
    assert nafnet.defense == DefenseDefaults(layer="net.encoders.1", k=2, a=2.0)
    assert nafnet.source == "swept (defaults.json, dehaze-nafnet)"
    for family in ("SwinIR", "ESRGAN"):  # a family not swept for this task (ESRGAN has no bundled teacher)
        other = preset("dehaze", FAMILIES[family].title, path)
        assert other.defense == DefenseDefaults() and other.source.startswith("built-in: defaults.json has no entry")
    assert start.defense.config.layers == ("enc2",) and start.defense.config.layout == "spatial"


@pytest.mark.parametrize("content,reason", [
    (None, "no defaults.json yet"),
    ("{not json", "defaults.json is unreadable"),
    ("[1, 2]", "defaults.json does not hold an object"),
    (json.dumps({"derain": {"layer": "enc2"}}), "defaults.json has no entry for dehaze"),
    (json.dumps({"dehaze": {"depth": 3}}), "defaults.json has a bad entry for dehaze"),
])
def test_without_a_usable_file_the_built_in_setting_stands_and_says_why(tmp_path, content, reason):
    path = tmp_path / "defaults.json"
    if content is not None:
        path.write_text(content)
    start = preset("dehaze", path=path)
    assert start.defense == DefenseDefaults() and start.source.startswith("built-in") and reason in start.source


def test_every_task_names_its_attacker():
    assert set(ATTACKS) <= set(TASKS)
    assert attack_for("sr_x4").steps == 400 and not attack_for("sr_x4").dilated
    assert attack_for("derain").loss == "l2" and attack_for("underwater").depth == 7
    assert attack_for("dehaze") == Attack() == preset("lowlight").attack
