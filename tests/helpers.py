"""Helpers the tests share (fixtures are in conftest.py): paths, the browser, small students, sweep rows."""
from pathlib import Path

import numpy as np
import pandas as pd
import torch


ROOT = Path(__file__).resolve().parent.parent
COFFEE = ROOT / "assets" / "coffee.png"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def open_app(p, app_url: str, width: int = 1440, height: int = 900):
    """Chromium on the app, once its first look has landed: (browser, page)."""
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(app_url)
    expect(page.get_by_text("teacher + ASVP: ")).to_be_visible(timeout=60_000)
    return browser, page


SMALL_RUN = dict(steps=6, queries=12, batch=4, patch=32)  # an attacker's budget that trains in a second


def weights(model) -> torch.Tensor:
    """Every parameter of a model, flattened into one vector (to compare students)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()])


CLEAN = {0: 20.0, 1: 21.0, 2: 22.0}  # clean-taught students' PSNR per seed: std 1.0 dB


def rows(setting: dict, t_dpsnr: float, s_dpsnr: float, seeds=(0, 1, 2), s_dssim=-0.01, learned=True, **more):
    """Raw CSV rows of one setting: the clean students of CLEAN, the defended ones `s_dpsnr` lower (one
    number, or one per seed)."""
    base = dict(task="dehaze", teacher="dehaze", teacher_family="U-Net", budget=150, student="s", stage="screen",
                defense="asvp", attack="output", attacker="output L1", layer_role="late", layout="channel",
                layer="dec1", k=1, a=2.0, tau=np.nan, placement="inline", directions="top", noise_sigma=0.0,
                teacher_clean_psnr=25.0, teacher_clean_ssim=0.9, served_rms=0.01, student_clean_rms=0.1,
                student_rms=0.11)
    base.update(setting, **more)
    return [dict(base, seed=seed, clean_key=f"{base['attacker']}/{base['layer']}/{base['budget']}/{seed}",
                 input_psnr=15.0 if learned else 30.0, input_ssim=0.7, teacher_psnr=25.0 + t_dpsnr, teacher_ssim=0.9,
                 student_clean_psnr=CLEAN[seed], student_clean_ssim=0.8,
                 student_psnr=CLEAN[seed] + (s_dpsnr[seed] if isinstance(s_dpsnr, dict) else s_dpsnr),
                 student_ssim=0.8 + s_dssim) for seed in seeds]


def frame(*parts) -> pd.DataFrame:
    return pd.DataFrame([r for part in parts for r in part])
