"""Every number a verdict is judged by, in one place: the app's verdict and the sweep's report
read these, so the two can never disagree.

Costs and drops are in dB of PSNR (positive = worse) and in SSIM (positive = worse).
"""

# The paper's headline (arXiv 2510.08925, abstract): students lose up to 4 dB PSNR and 60-75 % SSIM
PAPER_STUDENT_DROP_DB = 4.0
PAPER_SSIM_DROP_PCT = (60.0, 75.0)

# A teacher cost within both counts as negligible ("negligible teacher loss")
NEGLIGIBLE_PSNR_DB = 0.1
NEGLIGIBLE_SSIM = 0.01

# What students are scored against: the ground truth where the clean teacher beats its input there, else
# (a GAN teacher) the clean teacher's answer, which is what a thief copies
MEASURES = ("ground truth", "fidelity")

# The app's verdict on one Distill click
PROTECTS_DB = 1.0  # a student drop from here on is protection...
DAMAGES_PSNR_DB, DAMAGES_SSIM = 0.5, 0.02  # ...unless the teacher pays this much (either one)
WEAK_DB = 0.2  # a smaller drop from here on is weak protection; below it, none
UNCHANGED_DB = 0.01  # a teacher change within this is reported as no change

HEADLINE = (f"student -{PAPER_STUDENT_DROP_DB:g} dB PSNR and SSIM -{PAPER_SSIM_DROP_PCT[0]:g}.."
            f"{PAPER_SSIM_DROP_PCT[1]:g} % at a negligible teacher cost (<= {NEGLIGIBLE_PSNR_DB} dB PSNR and "
            f"<= {NEGLIGIBLE_SSIM} SSIM)")


def negligible(teacher_dpsnr: float, teacher_dssim: float) -> bool:
    """Whether a teacher change (defended - clean) is within the negligible cost (numbers or columns)."""
    return (teacher_dpsnr >= -NEGLIGIBLE_PSNR_DB) & (teacher_dssim >= -NEGLIGIBLE_SSIM)


def reaches_headline(student_dpsnr: float, ssim_drop_pct: float) -> bool:
    """Whether a student change (defended-taught - clean-taught) is as large as the paper's claim."""
    return (student_dpsnr <= -PAPER_STUDENT_DROP_DB) & (ssim_drop_pct >= PAPER_SSIM_DROP_PCT[0])
