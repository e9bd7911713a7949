"""Verdicts in words: a teacher cost only counts as negligible when PSNR *and* SSIM hold."""
import pandas as pd

from app import lab
from app.report import verdict


def summary_row(t_dpsnr, t_dssim, s_dpsnr, layer):
    return dict(task="t", stage="screen", family="asvp", attack="output", layout="channel", layer=layer, k=1, a=2.0,
                tau="-", placement="inline", directions="top", noise_sigma=0.0, t_dpsnr=t_dpsnr, t_dssim=t_dssim,
                s_dpsnr=s_dpsnr, s_dpsnr_std=0.1, s_dssim=-0.1, ssim_drop_pct=10.0, learned=True)


def test_report_verdict_ignores_settings_that_cost_the_teacher_ssim():
    s = pd.DataFrame([summary_row(+0.3, -0.05, -3.0, "dec1"), summary_row(-0.02, -0.001, -0.5, "enc2")])
    text = verdict(s)
    assert "-0.50 ± 0.10 dB" in text and "enc2" in text and "-3.00" not in text
    assert "no setting keeps the teacher" in verdict(s.iloc[:1])


def scores(teacher_ssim_drop):
    m = lambda psnr, ssim: dict(psnr=psnr, ssim=ssim)
    return {"input": m(20, 0.6), "teacher": m(28, 0.90), "teacher + ASVP": m(28.2, 0.90 - teacher_ssim_drop),
            "student (clean teacher)": m(25, 0.8), "student (defended teacher)": m(23, 0.7)}


def test_lab_verdict_names_the_price_in_ssim():
    assert lab.verdict(scores(0.05)).startswith("The defended-taught student lost 2.00 dB, but at a price")
    assert lab.verdict(scores(0.0)).startswith("ASVP protects here")
