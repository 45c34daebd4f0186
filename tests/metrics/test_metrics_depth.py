"""Tests of phaser.metrics.depth: Gaussian fits to depth profiles."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.metrics import depth_profile_fit, gaussian_profile

Z_A = np.arange(0.0, 60.0, 2.0)  # slice depths [A]


@pytest.mark.parametrize(
    "z0, fwhm, amplitude, background",
    [
        (23.3, 9.0, 0.4, 0.05),
        (41.7, 14.0, -0.2, 0.3),  # a dip
        (10.0, 5.0, 1.0, 0.0),  # narrow: under three slices above half maximum
    ],
)
def test_fit_recovers_a_synthetic_gaussian(z0, fwhm, amplitude, background):
    values = gaussian_profile(Z_A, z0, fwhm, amplitude, background)
    fit = depth_profile_fit(Z_A, values)
    assert fit.z0 == pytest.approx(z0, rel=0.01)
    assert fit.fwhm == pytest.approx(fwhm, rel=0.01)
    assert fit.amplitude == pytest.approx(amplitude, rel=0.01)
    assert fit.background == pytest.approx(background, abs=0.01 * abs(amplitude))
    z0_fit, fwhm_fit, _, _ = fit  # unpacks as a tuple
    assert (z0_fit, fwhm_fit) == (fit.z0, fit.fwhm)


def test_fit_tolerates_noise():
    values = gaussian_profile(Z_A, 30.0, 10.0, 0.5, 0.1)
    values = values + 0.005 * np.random.default_rng(0).normal(size=Z_A.size)
    fit = depth_profile_fit(Z_A, values)
    assert fit.z0 == pytest.approx(30.0, rel=0.01)
    assert fit.fwhm == pytest.approx(10.0, rel=0.03)


def test_fit_rejects_short_profiles():
    with pytest.raises(ValueError, match="at least 4"):
        depth_profile_fit([0.0, 1.0, 2.0], [0.0, 1.0, 0.0])
