"""Real-ESRGAN's second-order degradation: seeded and reproducible, the task's size, real degradation
(blur, noise, JPEG: far from a plain bicubic downscale), and kernels that keep the image's brightness."""
import numpy as np
import pytest

from app.data.degrade import bicubic_resize
from app.data.realworld import SecondOrder, gaussian_kernel, sinc_kernel
from app.data.sources import held_out_image


CLEAN = held_out_image("coffee")[:130, :97]  # sides that are no multiple of 4


def test_the_same_seed_gives_the_same_image_and_another_seed_another():
    degrade = SecondOrder()
    first = degrade(CLEAN, np.random.default_rng(7))
    assert np.array_equal(first, degrade(CLEAN, np.random.default_rng(7)))
    others = [degrade(CLEAN, np.random.default_rng(seed)) for seed in range(4)]
    assert all(np.abs(first - other).mean() > 1e-3 for other in others)


@pytest.mark.parametrize("seed", range(6))
def test_the_output_is_a_quarter_of_the_input_in_range_and_far_from_bicubic(seed):
    low = SecondOrder()(CLEAN, np.random.default_rng(seed))
    assert low.shape == (32, 24, 3) and low.dtype == np.float32
    assert 0 <= low.min() and low.max() <= 1
    assert np.abs(low - bicubic_resize(CLEAN[:128, :96], (32, 24))).mean() > 0.01  # degraded, not just resized


def test_a_tiny_image_survives_every_resize():
    assert SecondOrder()(CLEAN[:8, :12], np.random.default_rng(0)).shape == (2, 3, 3)


@pytest.mark.parametrize("kernel", [gaussian_kernel(21, 3.0, 0.5, 0.7), gaussian_kernel(7, 1.0, 1.0, 0.0, beta=3.0),
                                    gaussian_kernel(15, 2.0, 1.0, -1.0, beta=1.5, plateau=True), sinc_kernel(21, 1.2),
                                    sinc_kernel(7, np.pi / 3)])
def test_kernels_sum_to_one_and_peak_in_the_middle(kernel):
    size = kernel.shape[0]
    assert kernel.shape == (size, size) and abs(kernel.sum() - 1) < 1e-5
    assert kernel.argmax() == (size // 2) * size + size // 2
    assert np.allclose(kernel, kernel[::-1, ::-1])  # point-symmetric


def test_an_anisotropic_kernel_is_longer_along_its_rotated_axis():
    flat = gaussian_kernel(21, 4.0, 0.5, 0.0)  # wide in x, narrow in y
    assert flat[10, 15] > 10 * flat[15, 10]
    turned = gaussian_kernel(21, 4.0, 0.5, np.pi / 2)
    assert np.allclose(turned, flat.T, atol=1e-6)


def test_a_sinc_kernel_rings():
    kernel = sinc_kernel(21, np.pi / 4)
    assert kernel.min() < 0  # negative lobes: the overshoot of sharpened images
