"""Fresnel propagator: band limit, unitarity, composition, identity and the tilt shift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phaser.physics.grids import fft_frequencies
from phaser.physics.propagation import bandwidth_mask, fresnel_propagator, propagate

SHAPE = (32, 32)
SAMPLING = (0.2, 0.25)  # [A] unequal on purpose: the band limit follows the smaller Nyquist
WAVELENGTH = 0.025079  # [A] 200 kV


def _band_limited_wave(rng: np.random.Generator, shape=SHAPE, sampling=SAMPLING) -> np.ndarray:
    mask = bandwidth_mask(np, shape, sampling, 2 / 3, np.float64)
    spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) * mask
    return np.fft.ifft2(spectrum)


def _prop(dz, **kw):
    kw.setdefault("dtype", np.float64)
    return fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, dz, **kw)


def test_unit_modulus_inside_band_limit_zero_outside():
    prop = _prop(37.0, tilt_mrad=(3.0, -2.0))
    ky, kx = fft_frequencies(np, SHAPE, SAMPLING, np.float64)
    k = np.sqrt(ky**2 + kx**2)
    k_limit = 2 / 3 * min(0.5 / SAMPLING[0], 0.5 / SAMPLING[1])
    inside = k <= k_limit * (1 - 1e-9)
    outside = k > k_limit * (1 + 1e-9)
    assert inside.sum() > 0 and outside.sum() > 0
    np.testing.assert_allclose(np.abs(prop[inside]), 1.0, atol=1e-12)
    np.testing.assert_array_equal(prop[outside], 0.0)


def test_no_band_limit_is_unit_modulus_everywhere():
    np.testing.assert_allclose(np.abs(_prop(37.0, bwlim_frac=None)), 1.0, atol=1e-12)


def test_propagation_preserves_norm_of_band_limited_wave():
    wave = _band_limited_wave(np.random.default_rng(0))
    out = propagate(np, wave, _prop(123.0, tilt_mrad=(5.0, 1.0)))
    assert np.sum(np.abs(out) ** 2) == pytest.approx(np.sum(np.abs(wave) ** 2), rel=1e-10)
    assert not np.allclose(out, wave)  # it did something


@pytest.mark.parametrize("bwlim", [2 / 3, None])
def test_two_steps_equal_one(bwlim):
    wave = _band_limited_wave(np.random.default_rng(1))
    two = propagate(np, propagate(np, wave, _prop(12.5, bwlim_frac=bwlim)), _prop(30.0, bwlim_frac=bwlim))
    one = propagate(np, wave, _prop(42.5, bwlim_frac=bwlim))
    assert np.max(np.abs(two - one)) <= 1e-5 * np.max(np.abs(one))


def test_zero_distance_is_identity():
    wave = _band_limited_wave(np.random.default_rng(2))
    np.testing.assert_allclose(propagate(np, wave, _prop(0.0, tilt_mrad=(10.0, 10.0))), wave, atol=1e-12)
    np.testing.assert_allclose(_prop(0.0, bwlim_frac=None), 1.0, atol=0)


def test_negative_distance_undoes_positive():
    wave = _band_limited_wave(np.random.default_rng(3))
    back = propagate(
        np,
        propagate(np, wave, _prop(80.0, tilt_mrad=(4.0, -7.0))),
        _prop(-80.0, tilt_mrad=(4.0, -7.0)),
    )
    np.testing.assert_allclose(back, wave, atol=1e-10)


def _centre_of_mass_px(wave: np.ndarray) -> np.ndarray:
    weight = np.abs(wave) ** 2
    iy, ix = np.indices(wave.shape)
    return np.array([np.sum(iy * weight), np.sum(ix * weight)]) / np.sum(weight)


def test_tilt_shifts_wave_by_dz_tan_tilt():
    """Sign convention: a tilt ``(t_y, t_x)`` [mrad] moves the wave by ``+dz * tan(t)``."""
    shape, sampling = (64, 64), (0.1, 0.1)
    iy, ix = np.indices(shape)
    wave = np.exp(-((iy - 32) ** 2 + (ix - 32) ** 2) / (2 * 3.0**2)).astype(np.complex128)
    dz, tilt = 50.0, (10.0, -20.0)
    prop = fresnel_propagator(np, shape, sampling, WAVELENGTH, dz, tilt_mrad=tilt, bwlim_frac=None, dtype=np.float64)
    flat = fresnel_propagator(np, shape, sampling, WAVELENGTH, dz, bwlim_frac=None, dtype=np.float64)
    shift = _centre_of_mass_px(propagate(np, wave, prop)) - _centre_of_mass_px(propagate(np, wave, flat))
    expected = np.array([dz * math.tan(t * 1e-3) for t in tilt]) / np.asarray(sampling)  # (5, -10) px
    # periodic tails of the spread Gaussian bias the centre of mass by < 1e-3 px
    np.testing.assert_allclose(shift, expected, atol=2e-3)
    # and without tilt a centred, symmetric wave stays where it is
    np.testing.assert_allclose(_centre_of_mass_px(propagate(np, wave, flat)), [32, 32], atol=1e-9)


def test_float32_dtype():
    prop = fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, 10.0, dtype=np.float32)
    assert prop.dtype == np.complex64
