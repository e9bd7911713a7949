"""Findings from sweep rows: the noise floor, threat models, the best setting per threat model, the
headline call and the app's two defaults, on rows whose answers are known."""
import numpy as np
import pandas as pd
import pytest
from helpers import CLEAN, ROOT, frame, rows

from app.defense.bound import DERIVATION
from app.study import field
from app.study.findings import (THREATS, best, defaults, field_lines, headline, informed_lines, noise_floors, scenarios,
                                strongest_informed, summarise, theft_values, with_field, with_informed, with_theft)
from app.study.informed import targets
from app.study.report import (answer_table, answer_words, budget_rows, informed_left_words, long_quick_lines,
                              measured_verdicts, settings_table, teacher_section, theft_table)
from app.ui.demo import build_demo


def test_the_noise_floor_pools_clean_students_of_different_seeds_and_ignores_screens():
    raw = frame(rows({"a": 2.0}, 0, -0.5), rows({"a": 3.0}, 0, -0.5),  # one clean group (shared twins)
                rows({"layer": "enc1"}, 0, -0.5, seeds=(0,)))  # a one-seed screen: no spread
    assert noise_floors(raw) == {"dehaze": pytest.approx(1.0)}


def test_threat_models_follow_placement_and_what_the_attacker_reads():
    raw = frame(rows({}, 0, -0.1), rows({"attack": "fitnet", "attacker": "FitNet MSE"}, 0, -0.1),
                rows({"attack": "feature", "attacker": "feature L1 x1", "placement": "exposed"}, 0, -0.1))
    assert summarise(raw).threat.tolist() == list(THREATS)


def test_the_best_setting_is_confirmed_learned_and_cheap_and_an_effect_only_beyond_the_floor():
    raw = frame(rows({"a": 2.0}, -0.05, -0.6),  # cheap, within the 1 dB floor
                rows({"a": 3.0}, -0.05, -1.5),  # cheap, beyond it: the pick
                rows({"a": 5.0}, -0.5, -3.0),  # costly
                rows({"a": 10.0}, 0.0, -6.0, seeds=(0,)),  # screened with one seed only
                rows({"a": 30.0}, 0.0, -6.0, learned=False),  # its clean students never learned
                rows({"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1", "a": 100.0}, 0.0, -0.2))
    s = summarise(raw)
    cheap = best(s, cheap=True).set_index("threat")
    assert cheap.loc["in-line, output KD"].a == 3.0 and bool(cheap.loc["in-line, output KD"].effect)
    assert cheap.loc["exposed, feature KD"].a == 100.0 and not cheap.loc["exposed, feature KD"].effect
    assert best(s, cheap=False).set_index("threat").loc["in-line, output KD"].a == 5.0
    assert not any(headline(r) for r in s.itertuples())  # -1.5 dB and a 1 % SSIM drop: far from the paper
    words, table = answer_words(s), answer_table(s)
    assert "holds nowhere" in words
    assert ("| dehaze | U-Net | in-line, output KD | - | channel @ dec1, k=1, a=3, inline | output L1 | ground truth | "
            "-1.50 ± 0.00 |") in table
    assert "| dehaze | U-Net | in-line, feature KD | - | none: not measured |" in table
    assert "none: its clean-taught students never beat the input" not in table  # a=30 never learned, a=3 did
    assert "0 (outputs unchanged)" in table


def test_a_search_with_one_seed_so_far_says_its_floor_is_not_measured_rather_than_nan():
    table = answer_table(summarise(frame(rows({"a": 2.0}, 0.0, -0.5, seeds=(0,)))))
    assert "| n/a (< 3 seeds) |" in table and "nan" not in table
    assert "| none: no setting confirmed with 3+ seeds |" in table


def test_a_threat_model_measured_with_enough_seeds_but_never_valid_says_so():
    """Settings with five seeds where some seed's clean-taught student lost to the input: not a missing seed."""
    table = answer_table(summarise(frame(rows({"a": 2.0}, 0.0, -0.5, learned=False),
                                         rows({"a": 3.0}, 0.0, -0.5, seeds=(0,)))))
    assert "| none: at every setting with 3+ seeds a clean-taught student fails to beat the input |" in table


def test_a_drop_beyond_the_floor_but_inside_its_own_spread_is_no_effect():
    s = summarise(frame(rows({"a": 2.0}, 0.0, {0: -6.0, 1: 0.5, 2: 0.0}),  # mean -1.83, std 3.5
                        rows({"a": 3.0}, 0.0, {0: -2.0, 1: -2.2, 2: -1.8})))  # mean -2.0, std 0.2
    assert s.noise_floor.tolist() == pytest.approx([1.0, 1.0]) and s.effect.tolist() == [False, True]
    noisy = summarise(frame(rows({"a": 2.0}, 0.0, {0: -6.0, 1: 0.5, 2: 0.0})))
    assert "| 1.00 | no (within its own spread) |" in answer_table(noisy)  # beyond the floor: the spread says no
    assert "| 1.00 | no (within the floor) |" in answer_table(summarise(frame(rows({"a": 2.0}, 0.0, -0.5))))
    assert "| no drop to test |" in answer_table(noisy)  # the field stage (app.study.field) leaves such a pick out


def test_the_field_column_tells_a_pick_the_stage_will_reach_from_one_it_leaves_out(monkeypatch):
    """'-' only where the field stage fields a pick and has not measured it yet; a drop outside its largest few, or
    in-line under feature KD (the stage fields output KD in-line), says why it never will be."""
    monkeypatch.setattr(field, "SETTINGS", 1)  # the stage fields one setting: the largest drop in noise floors
    exposed = {"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1", "a": 100.0}
    s = summarise(frame(rows({"a": 3.0}, -0.05, -3.0), rows({"a": 3.0, "attack": "fitnet", "attacker": "FitNet MSE"},
                                                            -0.05, -3.0), rows(exposed, 0.0, -6.0)))
    assert field.fielded(s) == {("dehaze", "exposed, feature KD")}
    table = answer_table(s).splitlines()
    line = {threat: next(row for row in table if f"| {threat} |" in row) for threat in THREATS}
    assert line["exposed, feature KD"].endswith("| - | 0 (outputs unchanged) | no |")
    assert "| not fielded (not among the 1 largest drops) |" in line["in-line, output KD"]
    assert "| not fielded (in-line, the stage fields output KD) |" in line["in-line, feature KD"]


def test_the_field_stages_quick_students_extend_the_budget_curve_of_their_setting(tmp_path):
    """The quick student the field stage trains at its long budget is the budget curve's next point where the
    stage's pick is the curve's setting and attacker, a point of its own where not, and absent until every seed
    of the stage has landed."""
    exposed = {"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1", "a": 100.0}
    raw = frame(*(rows(dict(exposed, stage="budget", budget=b), 0.0, -6.0 / b ** 0.5) for b in (150, 600, 2400)))
    s = summarise(raw)
    long = frame(rows(dict(exposed, stage="field", budget=10_000), 0.0, -0.5),
                 rows(dict(exposed, stage="field", budget=10_000, student="field student, L1 loss"), 0.0, -2.0),
                 rows(dict(exposed, stage="field", budget=10_000, attacker="feature MSE x1"), 0.0, -1.0),
                 rows(dict(exposed, stage="field", budget=10_000, a=30.0), 0.0, -1.0, seeds=(0, 1)))
    longer = long_quick_lines(field_lines(s, long))
    assert sorted(longer.attacker) == ["feature L1 x1", "feature L1 x1", "feature MSE x1"]  # no field student
    curve = budget_rows(s, longer)
    assert len(curve) == 5 and set(curve.budget) == {150, 600, 2400, 10_000}  # the two-seed line waits
    extended = curve[curve.curve == curve.curve.iloc[0]].sort_values("budget")
    assert extended.budget.tolist() == [150, 600, 2400, 10_000] and extended.s_dpsnr.iloc[-1] == pytest.approx(-0.5)
    section = teacher_section(s, raw, None, longer, tmp_path)
    assert "| feature MSE x1 | 10000 | 3 |" in section and (tmp_path / "budget_dehaze.png").stat().st_size > 5000


def test_the_headline_holds_only_beyond_the_floor_and_names_an_exposed_attacker_who_could_drop_the_signal():
    exposed = dict(placement="exposed", attack="feature", attacker="feature MSE x10", a=100.0)
    s = summarise(frame(rows(exposed, 0.0, -5.0, s_dssim=-0.6)))
    assert headline(s.iloc[0])
    words = answer_words(s)
    assert "holds at" in words and "feature MSE x10" in words and "bit-identical" in words
    assert "standardises" not in words  # no normalising attacker measured: nothing said about one
    s.loc[0, "noise_floor"], s.loc[0, "effect"] = 6.0, False  # the same drop inside a wider floor
    assert not headline(s.iloc[0])


def test_an_exposed_headline_and_the_tour_say_what_the_same_setting_did_to_the_attacker_who_normalises_features():
    exposed = dict(placement="exposed", attack="feature", a=100.0, stage="attackers")
    s = summarise(frame(rows(dict(exposed, attacker="feature MSE x10"), 0.0, -5.0, s_dssim=-0.6),
                        rows(dict(exposed, attacker="feature L1 x1, normalised"), 0.0, -0.05),
                        rows(dict(exposed, attacker="feature L1 x1, normalised", a=10.0), 0.0, -0.9)))
    words, tour = answer_words(s), scenarios(s)[-1][2]
    for said in (words, tour):  # the report's answer, and the tour's strongest setting
        assert "standardises the features first: feature L1 x1, normalised, -0.05 ± 0.00 dB)" in said
    assert "-0.90" not in words + tour  # another setting's row is not this one's


def test_the_answer_shows_how_much_the_clean_taught_student_learned_and_the_budget_table_its_steps():
    s = summarise(frame(rows({}, 0.0, -1.5), rows({"stage": "budget", "budget": 600}, 0.0, -0.5)))
    assert "| -1.50 ± 0.00 | 1.3 % | - | +6.00 | 1.00 |" in answer_table(s)  # clean students 21 dB mean, input 15 dB
    curve = settings_table(s[s.stage == "budget"], bound=False, steps=True)
    assert curve.splitlines()[0].startswith("| setting | attacker | student steps |")
    assert "| output L1 | 600 | 3 |" in curve


def test_defaults_name_the_strongest_cheap_and_the_strongest_setting_with_their_attacker():
    raw = frame(rows({"a": 3.0}, -0.05, -1.5), rows({"a": 5.0}, -0.5, -3.0),
                rows({"layer": "enc1+dec1", "placement": "exposed", "attack": "feature"}, 0.0, -9.0))
    picked = defaults(summarise(raw))["dehaze"]
    assert picked["negligible"]["defense"] == dict(layer="dec1", layout="channel", k=1, a=3.0, tau=None,
                                                  placement="inline")
    assert picked["strongest"]["defense"]["a"] == 5.0  # the app hooks one layer: enc1+dec1 is left out
    assert picked["negligible"]["attacker"] == "output L1" and picked["strongest"]["student_dpsnr"] == -3.0
    assert picked["strongest"]["seeds"] == 3 and picked["strongest"]["noise_floor"] == picked["noise_floor"] == 1.0
    unlearned = defaults(summarise(frame(rows({}, 0.0, -1.0, learned=False))))
    assert unlearned == {"dehaze": {"noise_floor": 1.0}}  # a floor, but nothing to start from
    assert "field_dpsnr" not in picked["negligible"] and "informed_dpsnr" not in picked["negligible"]
    later = summarise(raw).assign(noise_floor=0.11484, field_steps=10_000, field_dpsnr=-2.7764, field_dpsnr_std=0.1049,
                                  field_learned=True, informed_attacker="feature AFFINITY x1", informed_dpsnr=0.0151,
                                  informed_dpsnr_std=0.07)
    kept = defaults(later)["dehaze"]["negligible"]
    assert (kept["field_steps"], kept["field_learned"]) == (10_000, True)
    assert kept["informed_attacker"] == "feature AFFINITY x1"
    for key, value in dict(noise_floor=0.11484, field_dpsnr=-2.7764, informed_dpsnr=0.0151).items():
        assert f"{kept[key]:.2f}" == f"{value:.2f}"  # the app's two decimals are the report's (0.115 said 0.12)


def test_the_about_tab_states_the_answer_and_the_bound_as_results_md_does():
    results = ROOT / "results"
    answer = measured_verdicts(results)
    assert answer.split("\n\n")[1] in (results / "RESULTS.md").read_text()  # the table, as the report wrote it
    shown = [b.value for b in build_demo().blocks.values() if type(b).__name__ == "Markdown" and b.value]
    assert any(DERIVATION in text and answer in text for text in shown)


def test_the_tour_shows_a_paid_drop_a_drop_inside_the_noise_and_the_strongest_real_one():
    s = summarise(frame(rows({"a": 2.0}, -2.0, -2.1),  # the teacher pays as much as the student: 1
                        rows({"a": 3.0}, 0.0, {0: -6.0, 1: 0.5, 2: 0.0}),  # -1.83 inside its own spread: 2
                        rows({"a": 5.0}, 0.0, {0: -1.4, 1: -1.6, 2: -1.5})))  # beyond the noise: 3
    (paid, one, paid_text), (noisy, two, noisy_text), (strongest, three, strongest_text) = scenarios(s)
    assert (s.loc[one].a, s.loc[two].a, s.loc[three].a) == (2.0, 3.0, 5.0)
    assert "on dehazing, " in paid_text  # the task in words, as the tour shows it
    assert "the student loses 2.10 dB, but the served teacher loses 2.00 dB" in paid_text
    assert "another seed can reverse it" in noisy_text and "beyond the noise" in strongest_text
    assert "untouched" not in strongest_text  # in-line: the served output carries it
    exposed = summarise(frame(rows(dict(placement="exposed", attack="feature", attacker="feature L1 x1"), 0.0, -1.5)))
    assert "this works only against an attacker who reads the exposed features" in scenarios(exposed)[-1][2]
    assert "field student" not in scenarios(exposed)[-1][2]  # the field stage has not measured it
    fielded = exposed.assign(field_steps=10_000, field_dpsnr=-1.2, field_dpsnr_std=0.3, field_learned=True,
                             informed_attacker="feature ASVP-AWARE x1", informed_dpsnr=-0.05, informed_dpsnr_std=0.02)
    assert ("(noise floor 1.00 dB); against the strongest attacker who knows the defense (feature ASVP-AWARE x1): "
            "-0.05 ± 0.02 dB; a field student of 10000 steps: -1.20 ± 0.30 dB.") in scenarios(fielded)[-1][2]


def test_a_teacher_that_does_not_beat_its_input_is_judged_by_fidelity():
    """A GAN teacher below its input on the ground truth: students count by their PSNR to its clean answer."""
    fidelity = dict(input_psnr=15.0, input_fidelity_psnr=18.0, input_fidelity_ssim=0.5, teacher_clean_psnr=14.0,
                    student_clean_fidelity_ssim=0.8, student_fidelity_ssim=0.6, teacher_fidelity_psnr=40.0)
    raw = pd.DataFrame([dict(r, **fidelity, student_clean_fidelity_psnr=r["student_clean_psnr"] + 5,
                             student_fidelity_psnr=r["student_clean_psnr"] + 3) for r in rows({}, 0, -0.1)])
    s = summarise(raw).iloc[0]
    assert s.measure == "fidelity" and s.s_dpsnr == pytest.approx(-2.0) and s.s_fidelity_dpsnr == pytest.approx(-2.0)
    assert s.clean_student_gain == pytest.approx(21.0 + 5 - 18.0) and s.ssim_drop_pct == pytest.approx(25.0)
    assert s.t_fidelity_psnr == 40.0 and s.noise_floor == pytest.approx(1.0)
    gan_learned_nothing = raw.assign(student_clean_fidelity_psnr=17.0, student_fidelity_psnr=16.0)
    assert not summarise(gan_learned_nothing).iloc[0].learned  # closer to the ground truth, farther from the teacher
    ground_truth = summarise(raw.assign(teacher_clean_psnr=25.0)).iloc[0]  # the teacher beats its input
    assert ground_truth.measure == "ground truth" and ground_truth.s_dpsnr == pytest.approx(-0.1)


def test_the_value_of_theft_is_the_clean_taught_students_gain_over_the_no_theft_one_seed_by_seed():
    raw = frame(rows({"a": 2.0}, -0.05, -1.0), rows({"a": 3.0}, -0.05, -4.0))  # cheap drops; the pick: -4 dB
    free = pd.DataFrame([dict(task="dehaze", teacher="dehaze", attacker="output L1", budget=150, seed=seed,
                              no_theft_psnr=18.0) for seed in CLEAN])
    s = summarise(raw)
    values = theft_values(raw, free, s).iloc[0]
    assert values.measure == "ground truth" and values.seeds == 3
    assert values.no_theft_gain == pytest.approx(3.0) and values.clean_gain == pytest.approx(6.0)
    assert values.theft_value == pytest.approx(3.0) and values.theft_value_std == pytest.approx(1.0)  # 2, 3, 4 dB
    assert values["in-line, output KD"] == pytest.approx(-1.0)  # 21 - 4 dB: below the 18 dB of the no-theft student
    assert np.isnan(values["exposed, feature KD"])  # no pick there
    table = theft_table(theft_values(raw, free, s))
    assert "| dehaze | U-Net | ground truth | 3 | +3.00 | +6.00 | +3.00 ± 1.00 | -1.00 | - | - |" in table


def test_informed_attackers_meet_exposed_drops_beyond_the_floor_and_the_in_line_frontier():
    exposed = {"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1"}
    raw = frame(rows({"a": 2.0}, -0.05, -0.6), rows({"a": 3.0}, -0.3, -1.5),  # both on the in-line frontier
                rows({"a": 5.0}, -0.5, -1.0),  # costs more, drops less: off it
                rows(dict(exposed, a=100.0), 0.0, -2.0),  # exposed, beyond the 1 dB floor
                rows(dict(exposed, a=10.0), 0.0, -0.5),  # exposed, within it
                rows(dict(exposed, a=30.0), 0.0, -2.0, stage="budget", budget=600))  # the budget curve's own question
    found = targets(summarise(raw))
    assert sorted((t.placement, t.a) for t in found) == [("exposed", 100.0), ("inline", 2.0), ("inline", 3.0)]


def test_the_answer_table_shows_the_value_of_theft_and_what_the_strongest_informed_attacker_leaves():
    exposed = {"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1", "a": 100.0}
    raw = frame(rows({"a": 3.0}, -0.05, -4.0), rows(exposed, 0.0, -6.0))
    aware = frame(rows(dict(exposed, attacker="feature ASVP-AWARE x1", stage="informed"), 0.0, -0.2),
                  rows(dict(exposed, attacker="feature AFFINITY x1", stage="informed"), 0.0, -3.0))
    free = pd.DataFrame([dict(task="dehaze", teacher="dehaze", attacker="output L1", budget=150, seed=seed,
                              no_theft_psnr=18.0) for seed in CLEAN])
    s = summarise(raw)
    s = with_informed(with_theft(s, theft_values(raw, free, s)), informed_lines(s, aware))
    picked = s.set_index("threat").loc["exposed, feature KD"]
    assert picked.informed_attacker == "feature ASVP-AWARE x1" and picked.informed_dpsnr == pytest.approx(-0.2)
    assert not picked.informed_effect  # 0.2 dB: within the 1 dB floor of the search
    assert np.isnan(s.set_index("threat").loc["in-line, output KD"].informed_dpsnr)  # no informed row there
    before = with_informed(s, informed_lines(s, pd.DataFrame()))  # the stage yet to run
    assert before.informed_attacker.isna().all() and before.informed_dpsnr.isna().all()
    table = answer_table(s)
    assert "| exposed, feature KD | +3.00 ± 1.00 | " in table
    assert "| -0.20 ± 0.00 (feature ASVP-AWARE x1, no effect) |" in table
    field = "field student (compact for SR, NAFNet otherwise), L1 loss"
    long = frame(rows(dict(exposed, student=field, stage="field", budget=10_000), 0.0, -1.5),
                 rows(dict(exposed, stage="field", budget=10_000), 0.0, -5.0),  # the quick student at that length
                 rows(dict(exposed, student=field, stage="field", budget=10_000, a=30.0), 0.0, -4.0, seeds=(0, 1)))
    fielded = with_field(s, field_lines(s, long)).set_index("threat")
    assert fielded.loc["exposed, feature KD"].field_dpsnr == pytest.approx(-1.5)  # the field student's, not the quick
    assert fielded.loc["exposed, feature KD"].field_steps == 10_000 and fielded.loc["exposed, feature KD"].field_effect
    assert "| -1.50 ± 0.00 (10000 steps) |" in answer_table(fielded.reset_index())  # beyond the 1 dB floor
    assert "| no drop to test |" not in answer_table(fielded.reset_index())  # both picks' drops are effects
    unlearned_rows = frame(rows(dict(exposed, student=field, stage="field", budget=10_000), 0.0, -1.5, learned=False))
    unlearned = with_field(s, field_lines(s, unlearned_rows))  # its clean twins do not beat the input
    assert "| -1.50 ± 0.00 (10000 steps; its clean twin did not learn: no count) |" in answer_table(unlearned)
    lines = informed_lines(summarise(raw), aware).set_index("attacker")
    assert lines.loc["feature AFFINITY x1"].searched_attacker == "feature L1 x1"
    affinity = lines.loc["feature AFFINITY x1"]
    assert affinity.searched_dpsnr == pytest.approx(-6.0) and affinity.effect


def test_the_informed_section_counts_what_the_strongest_informed_attacker_leaves_per_placement():
    exposed = {"placement": "exposed", "attack": "feature", "attacker": "feature L1 x1", "a": 100.0}
    informed = {"attack": "feature", "stage": "informed"}
    raw = frame(rows({"a": 3.0}, -0.05, -4.0), rows(exposed, 0.0, -6.0))
    aware = frame(rows(dict(exposed, **informed, attacker="feature ASVP-AWARE x1"), 0.0, -2.5),  # what is left here
                  rows(dict(exposed, **informed, attacker="feature AFFINITY x1"), 0.0, -3.0),
                  rows(dict(exposed, **informed, attacker="feature AFFINITY x1", a=30.0), 0.0, -0.2),  # within the floor
                  rows(dict(exposed, **informed, attacker="feature AFFINITY x1", a=10.0), 0.0, +1.5),  # a gain
                  rows(dict(informed, attacker="feature AFFINITY x1", a=5.0), -6.0, -4.0))  # in-line: paid by the teacher
    words = informed_left_words(strongest_informed(informed_lines(summarise(raw), aware)))
    assert ("exposed, 3 settings: a drop beyond the floor left at 1 (the largest -2.50 ± 0.00 dB, U-Net at channel @ "
            "dec1, k=1, a=100, exposed), a gain beyond it at 1; ") in words
    assert ("in-line, 1 setting: a drop beyond the floor left at 1 (the largest -4.00 ± 0.00 dB, U-Net at channel @ "
            "dec1, k=1, a=5, inline; each costs the served teacher 6.00 dB or more), a gain beyond it at 0.") in words
    early = informed_lines(summarise(raw), frame(rows(dict(exposed, **informed), 0.0, -2.5, seeds=(0,))))
    assert informed_left_words(strongest_informed(early)) == "No setting has met an informed attacker with 3 seeds yet."
