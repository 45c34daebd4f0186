"""Probe formation: normalisation, aperture, the defocus sign convention, the aberration function.

Convention under test (``phaser.physics``): ``probe = ifft2(A(k) exp(-i chi(k)))`` with Krivanek's
chi, ``chi = pi lambda C10 k^2 + ...``, and propagation over ``dz`` multiplies the spectrum by
``exp(-i pi lambda dz k^2)``. So a probe with ``C10 = +dz`` is the focused probe propagated by
``+dz`` downstream, and ``C10 = -dz`` comes to focus after propagating ``+dz``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from phaser.physics.aberrations import (
    Aberration,
    aberration_from_name,
    aberration_function,
    parse_aberrations,
)
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import fft_frequencies, real_space_sampling_A
from phaser.physics.probe import focused_probe
from phaser.physics.propagation import fresnel_propagator, propagate

SHAPE = (32, 32)
WAVELENGTH = electron_wavelength_A(200.0)
SAMPLING = real_space_sampling_A(WAVELENGTH, SHAPE, 2.0)  # ~0.39 A; 20 mrad = 10 detector px
CONV_MRAD = 20.0


def _probe(aberrations, total=1.0):
    return focused_probe(
        np,
        SHAPE,
        SAMPLING,
        WAVELENGTH,
        CONV_MRAD,
        aberrations,
        total_intensity=total,
        dtype=np.float64,
    )


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _k_grid():
    ky, kx = fft_frequencies(np, SHAPE, SAMPLING, np.float64)
    return ky, kx, np.sqrt(ky**2 + kx**2)


@pytest.mark.parametrize("total", [1.0, 1e5])
def test_normalised_to_total_intensity(total):
    probe = _probe([aberration_from_name("c1", 100.0)], total)
    assert np.sum(np.abs(probe) ** 2) == pytest.approx(total, rel=1e-10)


def test_float32_default_dtype():
    probe = focused_probe(np, SHAPE, SAMPLING, WAVELENGTH, CONV_MRAD, [])
    assert probe.dtype == np.complex64


def test_spectrum_is_zero_outside_aperture():
    probe = _probe([aberration_from_name("c1", 100.0), aberration_from_name("c3", 1e4)])
    spectrum = np.abs(np.fft.fft2(probe)) ** 2
    _, _, k = _k_grid()
    k_cut = CONV_MRAD * 1e-3 / WAVELENGTH
    dk = 1.0 / (SHAPE[0] * SAMPLING[0])
    inside = spectrum[k < k_cut - dk]
    assert np.all(spectrum[k > k_cut + dk] <= 1e-20 * inside.max())  # zero up to FFT roundoff
    # and flat well inside it (the aperture is a top hat, the aberrations only a phase)
    np.testing.assert_allclose(inside, inside.max(), rtol=1e-10)
    assert inside.size > 200  # about pi * 9^2 pixels


def test_focused_probe_is_centred():
    probe = _probe([])
    peak = np.unravel_index(np.argmax(np.abs(probe)), SHAPE)
    assert peak == (SHAPE[0] // 2, SHAPE[1] // 2)


@pytest.mark.parametrize("dz", [50.0, 150.0, -80.0])
def test_positive_c10_is_focused_probe_propagated_downstream(dz):
    focused = _probe([])
    defocused = _probe([aberration_from_name("c1", dz)])
    prop = fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, dz, bwlim_frac=None, dtype=np.float64)
    propagated = propagate(np, focused, prop)
    assert _overlap(propagated, defocused) > 0.999
    np.testing.assert_allclose(propagated, defocused, atol=1e-10)
    # the opposite sign is a different probe
    opposite = propagate(np, focused, np.conj(prop))
    assert _overlap(opposite, defocused) < 0.9


def test_negative_c10_comes_to_focus_after_propagating():
    dz = 100.0
    focused = _probe([])
    prop = fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, dz, bwlim_frac=None, dtype=np.float64)
    refocused = propagate(np, _probe([aberration_from_name("c1", -dz)]), prop)
    assert np.max(np.abs(refocused) ** 2) == pytest.approx(np.max(np.abs(focused) ** 2), rel=1e-8)
    assert _overlap(refocused, focused) > 0.999
    # a defocused probe's peak is lower; propagating the wrong way defocuses it further
    assert np.max(np.abs(_probe([aberration_from_name("c1", -dz)])) ** 2) < 0.5 * np.max(np.abs(focused) ** 2)
    further = propagate(np, _probe([aberration_from_name("c1", dz)]), prop)
    assert np.max(np.abs(further) ** 2) < np.max(np.abs(_probe([aberration_from_name("c1", dz)])) ** 2)


def test_defocus_term_is_pi_lambda_c10_k2():
    ky, kx, k = _k_grid()
    chi = aberration_function(np, ky, kx, WAVELENGTH, [aberration_from_name("c1", 123.0)])
    np.testing.assert_allclose(chi, math.pi * WAVELENGTH * 123.0 * k**2, rtol=1e-12, atol=1e-12)


def test_spherical_term_is_pi_over_2_c3_lambda3_k4():
    ky, kx, k = _k_grid()
    c3 = 2.5e4  # [A]
    chi = aberration_function(np, ky, kx, WAVELENGTH, [aberration_from_name("c3", c3)])
    np.testing.assert_allclose(chi, math.pi / 2 * c3 * WAVELENGTH**3 * k**4, rtol=1e-12, atol=1e-12)


def test_astigmatism_real_part_is_along_cos_2phi():
    ky, kx, k = _k_grid()
    chi = aberration_function(np, ky, kx, WAVELENGTH, [aberration_from_name("a1", 40.0)])
    phi = np.arctan2(ky, kx)
    np.testing.assert_allclose(chi, math.pi * WAVELENGTH * 40.0 * k**2 * np.cos(2 * phi), atol=1e-12)


def test_polar_and_cartesian_give_same_chi():
    ky, kx, _ = _k_grid()
    mag, angle = 1e4, 30.0  # [A]: large enough that every order gives radians at the corners
    cart = {"re": mag * math.cos(math.radians(angle)), "im": mag * math.sin(math.radians(angle))}
    for name in ("a1", "b2", "s3", "a2"):
        polar_chi = aberration_function(
            np, ky, kx, WAVELENGTH, [aberration_from_name(name, {"mag": mag, "angle": angle})]
        )
        cart_chi = aberration_function(np, ky, kx, WAVELENGTH, [aberration_from_name(name, cart)])
        assert np.abs(polar_chi).max() > 1.0
        np.testing.assert_allclose(polar_chi, cart_chi, rtol=1e-10, atol=1e-10)
    # the {n, m} entry form agrees with the short name (a1 = C12)
    by_order = parse_aberrations([{"n": 1, "m": 2, "mag": mag, "angle": angle}])
    by_name = parse_aberrations([{"a1": cart}])
    assert by_order[0].value_A == pytest.approx(by_name[0].value_A, rel=1e-12)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 0), (1, 3), (3, 1), (-1, 0), (2, -1)])
def test_invalid_order_raises(n, m):
    with pytest.raises(ValueError, match="not a valid"):
        Aberration(n, m, 1.0)


@pytest.mark.parametrize(("n", "m"), [(1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (5, 6)])
def test_valid_orders_accepted(n, m):
    Aberration(n, m, 1.0)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown aberration"):
        aberration_from_name("c7", 1.0)
