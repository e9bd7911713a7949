"""Per-task starting points: read from the sweep's defaults file when asked, built-in otherwise."""
import json

import pytest

from app.attack.attackers import ATTACKERS, ATTACKS, attack_for, attacker, own_attacker
from app.attack.distill import Attack
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.lab.presets import BUILT_IN, noise_floor, preset
from app.teachers.families import FAMILIES


def pick(layer, a, attacker="output L1", placement="inline", **more):
    return dict(defense=dict(layer=layer, layout="channel", k=2, a=a, tau=None, placement=placement, **more),
                attacker=attacker, student_dpsnr=-1.234, student_dpsnr_std=0.5, noise_floor=0.8, teacher_dpsnr=-0.05,
                teacher_dssim=-0.001, seeds=5)


def test_swept_defaults_are_read_from_the_file_named_with_the_attacker_they_were_measured_against(tmp_path):
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps({"dehaze": dict(noise_floor=0.6, negligible=pick("enc2", 3.0),
                                               strongest=pick("dec1", 100.0, "FitNet MSE", "exposed")),
                                "dehaze-nafnet": dict(negligible=pick("net.encoders.1", 2.0))}))
    start = preset("dehaze", path=path)
    assert start.defense == Setting(layers=("enc2",), k=2, a=3.0) and start.attacker == "output L1"
    assert start.source == ("swept (defaults.json, dehaze, the strongest at a negligible teacher cost: student "
                            "-1.23 ± 0.50 dB (noise floor 0.80) under output L1, teacher -0.05 dB / SSIM -0.0010, 5 seeds)")
    strongest = preset("dehaze", pick="strongest", path=path)
    assert strongest.defense == Setting(layers=("dec1",), k=2, a=100.0, placement="exposed")
    assert strongest.attack == attacker(attack_for("dehaze"), "FitNet MSE") and strongest.attack.kind == "fitnet"
    nafnet = preset("dehaze", FAMILIES["NAFNet"], path=path)  # any NAFNet starts from the bundled one's search
    assert nafnet.defense.layers[0] == "net.encoders.1" and "dehaze-nafnet" in nafnet.source
    assert preset("dehaze", FAMILIES["NAFNet"], "strongest", path).source.startswith(
        "built-in: defaults.json has no usable 'strongest' entry for dehaze-nafnet (KeyError")
    for family in ("SwinIR", "ESRGAN"):  # a family not searched for this task (ESRGAN has no bundled teacher)
        other = preset("dehaze", FAMILIES[family].title, path=path)
        assert other.defense == BUILT_IN and other.source.startswith("built-in: defaults.json has no entry")
    assert start.defense.layers == ("enc2",)
    assert noise_floor("dehaze", path=path) == 0.6 and noise_floor("dehaze", FAMILIES["NAFNet"], path) is None
    assert noise_floor("dehaze", path=tmp_path / "absent.json") is None


def test_a_swept_pick_says_what_the_informed_attacker_and_the_field_student_left_of_its_drop(tmp_path):
    path = tmp_path / "defaults.json"
    measured = dict(informed_attacker="feature ASVP-AWARE x1", informed_dpsnr=0.0123, informed_dpsnr_std=0.004,
                    field_steps=10_000, field_dpsnr=-2.7764, field_dpsnr_std=0.1049, field_learned=True)
    unlearned = {**measured, "field_learned": False}
    path.write_text(json.dumps({"dehaze": dict(negligible=dict(pick("enc2", 3.0), **measured),
                                               strongest=dict(pick("dec1", 100.0), **unlearned))}))
    assert preset("dehaze", path=path).source.endswith(
        "5 seeds; against the strongest attacker who knows the defense (feature ASVP-AWARE x1): +0.01 ± 0.00 dB; "
        "a field student of 10000 steps: -2.78 ± 0.10 dB)")
    assert preset("dehaze", pick="strongest", path=path).source.endswith(
        "-2.78 ± 0.10 dB, its clean twin did not learn: no count)")


@pytest.mark.parametrize("content,reason", [
    (None, "no defaults.json yet"),
    ("{not json", "defaults.json is unreadable"),
    ("[1, 2]", "defaults.json does not hold an object"),
    (json.dumps({"derain": {"negligible": pick("enc2", 2.0)}}), "defaults.json has no entry for dehaze"),
    (json.dumps({"dehaze": {"negligible": dict(pick("enc2", 2.0), attacker="telepathy")}}), "unknown attacker"),
    (json.dumps({"dehaze": {"negligible": pick("enc2", 2.0, depth=3)}}), "no usable 'negligible' entry"),
    (json.dumps({"dehaze": {"negligible": "enc2"}}), "no usable 'negligible' entry for dehaze (TypeError"),
])
def test_without_a_usable_file_the_built_in_setting_stands_and_says_why(tmp_path, content, reason):
    path = tmp_path / "defaults.json"
    if content is not None:
        path.write_text(content)
    start = preset("dehaze", path=path)
    assert start.defense == BUILT_IN and start.source.startswith("built-in") and reason in start.source
    assert start.attacker == "output L1" and start.attack == attack_for("dehaze")


def test_an_unknown_pick_or_attacker_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown pick 'best'"):
        preset("dehaze", pick="best")
    with pytest.raises(ValueError, match="unknown attacker 'feature'; choose one of output L1, output L2"):
        attacker(Attack(), "feature")


@pytest.mark.parametrize("task", list(TASKS))
def test_every_named_attacker_is_labelled_by_its_name_and_the_task_names_its_own(task):
    for name in ATTACKERS:
        assert attacker(attack_for(task), name).label == name
    assert attacker(attack_for(task), own_attacker(task)) == attack_for(task)


def test_every_task_names_its_attacker():
    assert set(ATTACKS) <= set(TASKS)
    assert attack_for("sr_x4").steps == 400 and not attack_for("sr_x4").dilated
    assert attack_for("derain").loss == "l2" and attack_for("underwater").depth == 7
    assert attack_for("dehaze") == Attack() == attack_for("lowlight")
