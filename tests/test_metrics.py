"""The metric conventions: inf for identical images, SR on Y with a border crop."""
import numpy as np

from app.data.metrics import calculate_psnr, calculate_ssim, rgb_to_y, score
from app.data.tasks import TASKS


def test_identical_images_have_infinite_psnr_and_unit_ssim():
    img = np.random.default_rng(0).random((32, 32, 3))
    assert calculate_psnr(img, img) == float("inf")
    assert calculate_ssim(img, img) == 1.0


def test_psnr_matches_its_definition():
    a = np.zeros((16, 16, 3))
    b = a + 0.1
    assert abs(calculate_psnr(a, b) - 20.0) < 1e-9


def test_sr_convention_crops_the_border_and_uses_y():
    rng = np.random.default_rng(1)
    gt = rng.random((40, 40, 3))
    out = gt.copy()
    out[:2] = 0  # damage only the 2-pixel border that x2 SR crops away
    assert score(out, gt, TASKS["sr_x2"])["psnr"] == float("inf")
    assert np.isfinite(score(out, gt, TASKS["dehaze"])["psnr"])
    swapped = gt.copy()
    swapped[..., [0, 2]] = gt[..., [2, 0]]  # a red/blue swap changes Y, RGB PSNR is lower still
    assert score(swapped, gt, TASKS["sr_x2"])["psnr"] > score(swapped, gt, TASKS["dehaze"])["psnr"]


def test_y_channel_is_bt601():
    white, black = np.ones((1, 1, 3)), np.zeros((1, 1, 3))
    assert np.isclose(rgb_to_y(white)[0, 0], 235 / 255) and np.isclose(rgb_to_y(black)[0, 0], 16 / 255)
