"""The app's verdict on one Distill click, in words: a teacher cost counts as negligible only when PSNR *and*
SSIM hold."""
import numpy as np
import pytest

from app.attack.distill import Attack
from app.data.metrics import score
from app.data.tasks import TASKS
from app.defense.setting import Setting
from app.lab import scenes, verdicts
from app.ui.texts import verdict_markdown, verdict_text, why_text


def scores(teacher_ssim_drop, student_psnr=25.0):
    q = scenes.Quality
    return scenes.DuelScores(q(20, 0.6), q(28, 0.90), q(28.2, 0.90 - teacher_ssim_drop), q(student_psnr, 0.8), q(23, 0.7))


def test_lab_verdict_names_the_price_in_ssim():
    costly = verdicts.verdict(scores(0.05))
    assert costly.outcome == "costly" and costly.student_drop == 2.0
    assert verdict_text(costly).startswith("The defended-taught student lost 2.00 dB, but at a price")
    assert verdicts.verdict(scores(0.0)).outcome == "protects"
    assert verdict_text(verdicts.verdict(scores(0.0))).startswith("ASVP protects here")


def test_lab_verdict_refuses_to_judge_a_student_that_did_not_learn():
    assert verdicts.verdict(scores(0.0, student_psnr=19.0)).outcome == "not learned"
    assert "did not learn" in verdict_text(verdicts.verdict(scores(0.0, student_psnr=19.0)))


INLINE, EXPOSED = Setting(), Setting(placement="exposed")
FEATURE = Attack(kind="feature", feature_weight=1.0)


def test_the_why_names_the_exposed_placement_to_an_attacker_who_never_reads_it():
    why = why_text(verdicts.Verdict("none", 0.0, 0.0, 0.0, 0.0), EXPOSED, Attack(), 0.6)
    assert why.startswith("Exposed features reach only a feature-distilling attacker: output L1 distils")
    assert "which this attacker (feature L1 x1) reads, were perturbed" in why_text(verdicts.Verdict("weak", 0.3, 0.0, 0.0, 0.0), EXPOSED,
                                                                 FEATURE, None)


def test_the_why_sets_the_drop_against_the_bound_and_the_noise_floor():
    none = verdicts.Verdict("none", 0.05, 0.01, 0.0, -0.12)
    why = why_text(none, INLINE, Attack(), 0.6)
    assert "could lose at most 0.12 dB from how far the teacher's answers moved on this image; this one lost 0.05" in why
    assert "within the noise floor of 0.60 dB" in why and "another seed" in why
    assert "beyond the noise floor of 0.60 dB" in why_text(verdicts.Verdict("protects", 1.5, 0.0, 0.0, -0.2), INLINE,
                                                          Attack(), 0.6)
    assert "noise floor" not in why_text(none, INLINE, Attack(), None)  # no search for this teacher: no floor


def test_the_why_calls_a_costly_drop_the_teacher_s_damage_and_stays_silent_without_a_verdict():
    assert "lost 3.00 dB: a student copies what it is served" in why_text(
        verdicts.Verdict("costly", 2.5, 3.0, -0.1, -2.8), INLINE, Attack(), None)
    assert why_text(verdicts.verdict(scores(0.0, student_psnr=19.0)), INLINE, Attack(), 0.6) == ""
    assert verdict_markdown(verdicts.Verdict("no reference"), INLINE, Attack(), 0.6).count("**") == 2  # no Why


def test_the_image_bound_is_zero_for_unchanged_answers_and_grows_with_the_change():
    rng = np.random.default_rng(0)
    target = rng.random((8, 8, 3)).astype(np.float32)
    scene = scenes.Scene(TASKS["dehaze"], target, target)
    student, answers = target + 0.1, target
    assert verdicts.image_bound(scene, answers, answers, student) == 0.0
    small, large = (verdicts.image_bound(scene, answers, answers + d, student) for d in (0.01, 0.1))
    assert large < small < 0 and large == pytest.approx(20 * np.log10(0.1 / 0.2), abs=1e-4)
    assert np.isnan(verdicts.image_bound(scenes.Scene(TASKS["dehaze"], target, None), answers, answers, student))


def gan_scores(clean_fidelity: float, defended_fidelity: float) -> scenes.DuelScores:
    """A teacher below its input on the ground truth (25 vs 26 dB), its students scored both ways."""
    q = scenes.Quality
    return scenes.DuelScores(q(26, 0.7), q(25, 0.72), q(25, 0.72), q(24.5, 0.7), q(24.4, 0.7),
                             scenes.Fidelity(q(27, 0.8), q(45, 0.99), q(clean_fidelity, 0.9), q(defended_fidelity, 0.85)))


def test_a_teacher_that_does_not_beat_its_input_is_judged_by_fidelity():
    judged = verdicts.verdict(gan_scores(32.0, 29.0))
    assert judged.measure == "fidelity" and judged.outcome == "protects" and judged.student_drop == 3.0
    assert "measured by fidelity: PSNR to the clean teacher's answer" in verdict_text(judged)
    not_learned = verdicts.verdict(gan_scores(26.5, 26.0))  # no closer to the teacher than the input (27 dB)
    assert not_learned.outcome == "not learned" and "no closer to the teacher's answer" in verdict_text(not_learned)
    assert verdicts.verdict(scores(0.0)).measure == "ground truth"  # a teacher that beats its input


def test_fidelity_scores_each_output_against_the_clean_teachers_answer():
    scene = scenes.make_scene(TASKS["sr_x2"], np.random.default_rng(0).random((48, 64, 3)).astype(np.float32), False, 0)
    clean = scenes.baseline(scene) * 0.9 + 0.05  # some teacher answer at the output's size
    shifted = np.clip(clean + 0.01, 0, 1)
    f = scenes.fidelity(scene, clean, shifted, (clean, np.clip(clean + 0.1, 0, 1)))
    assert f.input == scenes.Quality(**score(scenes.baseline(scene), clean, TASKS["sr_x2"]))
    assert f.clean_student.psnr == float("inf") and f.clean_student.ssim == 1.0  # a perfect copy
    assert f.defended_teacher.psnr > f.defended_student.psnr  # 0.01 off is closer than 0.1 off


def test_the_verdict_says_when_a_slow_teacher_answered_fewer_queries():
    v = verdicts.Verdict("none", 0.05, 0.01, 0.0)
    fewer = verdict_markdown(v, INLINE, Attack(queries=26), 0.6, asked=96)
    assert "**Fewer queries.**" in fewer and "from 26 of the attacker's 96 queries" in fewer
    assert "Fewer queries" not in verdict_markdown(v, INLINE, Attack(queries=96), 0.6, asked=96)
