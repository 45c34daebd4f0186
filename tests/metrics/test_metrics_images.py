"""Tests of phaser.metrics.images: MSE, RMSE, NCC and SSIM."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from phaser.metrics import mse, ncc, rmse, ssim

SHAPE = (64, 64)


def blob_image(seed: int = 0, n_blobs: int = 40, sigma_px: float = 1.5) -> np.ndarray:
    """Gaussian 'atoms' of random heights at random places: a 64x64 test phase [rad]."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(SHAPE, dtype=np.float64)
    image = np.zeros(SHAPE)
    for cy, cx, height in zip(*rng.uniform([4, 4, 0.2], [60, 60, 1.0], size=(n_blobs, 3)).T, strict=True):
        image += height * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma_px**2))
    return image


def test_identical_images_are_ideal():
    image = blob_image()
    assert mse(image, image) == 0.0
    assert rmse(image, image) == 0.0
    assert ssim(image, image) == pytest.approx(1.0)


def test_scores_degrade_monotonically_with_noise():
    image = blob_image()
    noise = np.random.default_rng(1).normal(size=SHAPE)
    levels = [0.01, 0.03, 0.1, 0.3]
    errors = [rmse(image + level * noise, image) for level in levels]
    similarities = [ssim(image + level * noise, image) for level in levels]
    assert np.all(np.diff(errors) > 0)
    assert np.all(np.diff(similarities) < 0)
    assert errors[0] == pytest.approx(0.01 * np.sqrt(np.mean(noise**2)))


def test_scores_degrade_monotonically_with_blur():
    image = blob_image()
    sigmas = [0.3, 0.7, 1.5, 3.0]
    errors = [mse(gaussian_filter(image, s), image) for s in sigmas]
    similarities = [ssim(gaussian_filter(image, s), image) for s in sigmas]
    assert np.all(np.diff(errors) > 0)
    assert np.all(np.diff(similarities) < 0)


def test_mask_restricts_the_compared_pixels():
    image = blob_image()
    other = image.copy()
    other[:10] += 5.0  # differences only outside the mask
    mask = np.zeros(SHAPE, dtype=bool)
    mask[20:50, 20:50] = True
    assert rmse(other, image, mask) == 0.0
    assert rmse(other, image) > 0.0
    assert ssim(other, image, mask=mask) == pytest.approx(1.0)


def test_ssim_data_range_defaults_to_the_reference_range():
    image = blob_image()
    noisy = image + 0.1 * np.random.default_rng(2).normal(size=SHAPE)
    assert ssim(noisy, image) == pytest.approx(ssim(noisy, image, data_range=np.ptp(image)))
    assert ssim(noisy, image, data_range=10 * np.ptp(image)) > ssim(noisy, image)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        mse(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(TypeError, match="complex"):
        ssim(np.ones(SHAPE, complex), np.ones(SHAPE, complex))
    with pytest.raises(ValueError, match="no pixel"):
        rmse(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4), bool))


def test_ncc_is_pearsons_r_and_ignores_scale_and_offset() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(24, 24))
    noise = rng.normal(size=(24, 24))
    assert ncc(a, 2.5 * a - 7.0) == pytest.approx(1.0, abs=1e-12)
    assert ncc(a, -a) == pytest.approx(-1.0, abs=1e-12)
    mixed = a + 0.5 * noise
    assert ncc(a, mixed) == pytest.approx(np.corrcoef(a.ravel(), mixed.ravel())[0, 1], abs=1e-12)
    mask = np.zeros_like(a, dtype=bool)
    mask[4:12, 5:20] = True
    outside_changed = np.where(mask, a, noise)
    assert ncc(a, outside_changed, mask) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="constant"):
        ncc(a, np.ones_like(a))
