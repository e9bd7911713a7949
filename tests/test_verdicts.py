"""The app's verdict on one Distill click, in words: a teacher cost counts as negligible only when PSNR *and*
SSIM hold."""
from app import lab
from app.ui import verdict_text


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
