"""Tests of phaser.metrics.frc: FRC curves, thresholds and the resolution read from them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from phaser.metrics import FRCResult, frc, frc_resolution, half_bit_threshold
from phaser.physics.shift import fourier_shift

SHAPE = (64, 64)


def random_texture(seed: int = 0) -> np.ndarray:
    """A 64x64 image with power at every frequency (mildly smoothed white noise)."""
    return gaussian_filter(np.random.default_rng(seed).normal(size=SHAPE), 0.7)


def test_identical_images_correlate_perfectly():
    image = random_texture()
    result = frc(image, image)
    assert len(result.frequencies) == 33
    assert result.frequencies[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(result.curve[1:], 1.0, atol=1e-12)
    crossing = frc_resolution(result)
    assert not crossing.crossed
    assert crossing.resolution == pytest.approx(2.0)  # the Nyquist limit, in px


def test_frc_degrades_monotonically_with_noise():
    image = random_texture()
    noise = np.random.default_rng(5).normal(size=SHAPE)
    levels = [0.05, 0.2, 0.5, 1.5]
    means = [np.nanmean(frc(image + level * noise, image).curve[1:]) for level in levels]
    assert np.all(np.diff(means) < 0)
    assert means[0] > 0.9


def test_frc_degrades_with_blur_at_fixed_noise_but_not_with_blur_alone():
    image = random_texture()
    noise = 0.05 * np.random.default_rng(6).normal(size=SHAPE)
    sigmas = [0.5, 1.0, 2.0, 3.0]
    means = [np.nanmean(frc(gaussian_filter(image, s) + noise, image).curve[1:]) for s in sigmas]
    assert np.all(np.diff(means) < 0)
    # an isotropic blur scales each ring by one gain, which the FRC normalises away
    pure_blur = frc(gaussian_filter(image, 1.0, mode="wrap"), image, window=None)
    assert np.nanmin(pure_blur.curve[1:20]) > 0.99


def test_frequencies_in_inverse_angstrom_with_sampling():
    image = random_texture()
    noisy = image + 1.0 * np.random.default_rng(7).normal(size=SHAPE)
    in_px = frc(noisy, image)
    in_A = frc(noisy, image, sampling_A=(0.25, 0.25))
    assert in_A.frequency_unit == "1/A" and in_px.frequency_unit == "1/px"
    assert in_A.frequencies[-1] == pytest.approx(2.0)  # Nyquist 1 / (2 * 0.25 A)
    np.testing.assert_allclose(in_A.curve, in_px.curve)
    assert frc_resolution(in_A).resolution == pytest.approx(0.25 * frc_resolution(in_px).resolution)


def test_a_shift_lowers_the_frc():
    image = random_texture()
    shifted = np.real(fourier_shift(np, image, np.array([0.5, 0.0])))
    assert np.nanmean(frc(shifted, image).curve[1:]) < 0.95


def test_half_bit_threshold_values():
    assert half_bit_threshold(1) == pytest.approx(1.0)
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, rel=1e-4)
    values = half_bit_threshold(np.array([1, 4, 16, 100, 1000]))
    assert np.all(np.diff(values) < 0)
    assert 0.17 < values[-1] < 0.25


def test_resolution_interpolates_the_first_crossing():
    frequencies = np.linspace(0.0, 0.5, 6)  # 0.1 per ring
    curve = np.array([1.0, 0.9, 0.5, 0.1, 0.3, 0.0])  # falls below 0.3 between 0.2 and 0.3
    result = FRCResult(frequencies, curve, np.full(6, 100), sampling_A=(0.5, 0.5))
    crossing = frc_resolution(result, threshold=0.3)
    assert crossing.crossed
    assert crossing.frequency == pytest.approx(0.25)
    assert crossing.resolution == pytest.approx(4.0)  # A
    assert frc_resolution(result, "1/7").frequency == pytest.approx(0.2 + 0.1 * (0.5 - 1 / 7) / 0.4)
    with pytest.raises(ValueError, match="threshold"):
        frc_resolution(result, "one-bit")


def test_half_bit_resolution_of_noisy_images_is_sane():
    image = random_texture()
    noise = np.random.default_rng(8)
    a = image + 0.8 * noise.normal(size=SHAPE)
    b = image + 0.8 * noise.normal(size=SHAPE)
    result = frc(a, b, window="hann")
    half_bit = frc_resolution(result, "half-bit")
    assert half_bit.crossed and 2.0 < half_bit.resolution < 32.0
