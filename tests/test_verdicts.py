"""Verdicts in words: a teacher cost only counts as negligible when PSNR *and* SSIM hold."""
import pandas as pd

from app import lab
from app.report import verdict
from app.ui import verdict_text


def summary_row(t_dpsnr, t_dssim, s_dpsnr, layer):
    return dict(task="t", teacher="t", teacher_family="U-Net", stage="screen", defense="asvp", attack="output", layer_role="-",
                layout="channel", layer=layer, k=1, a=2.0,
                tau="-", placement="inline", directions="top", noise_sigma=0.0, t_dpsnr=t_dpsnr, t_dssim=t_dssim,
                s_dpsnr=s_dpsnr, s_dpsnr_std=0.1, s_dssim=-0.1, ssim_drop_pct=10.0, learned=True)


def test_report_verdict_ignores_settings_that_cost_the_teacher_ssim():
    s = pd.DataFrame([summary_row(+0.3, -0.05, -3.0, "dec1"), summary_row(-0.02, -0.001, -0.5, "enc2")])
    text = verdict(s)
    assert "-0.50 ± 0.10 dB" in text and "enc2" in text and "-3.00" not in text
    assert "no setting keeps the teacher" in verdict(s.iloc[:1])


def scores(teacher_ssim_drop, student_psnr=25.0):
    q = lab.Quality
    return lab.DuelScores(q(20, 0.6), q(28, 0.90), q(28.2, 0.90 - teacher_ssim_drop), q(student_psnr, 0.8), q(23, 0.7))


def test_lab_verdict_names_the_price_in_ssim():
    costly = lab.verdict(scores(0.05))
    assert costly.outcome == "costly" and costly.student_drop == 2.0
    assert verdict_text(costly).startswith("The defended-taught student lost 2.00 dB, but at a price")
    assert lab.verdict(scores(0.0)).outcome == "protects"
    assert verdict_text(lab.verdict(scores(0.0))).startswith("ASVP protects here")


def test_lab_verdict_refuses_to_judge_a_student_that_did_not_learn():
    assert lab.verdict(scores(0.0, student_psnr=19.0)).outcome == "not learned"
    assert "did not learn" in verdict_text(lab.verdict(scores(0.0, student_psnr=19.0)))
