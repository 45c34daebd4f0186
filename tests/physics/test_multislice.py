"""The multislice forward model (numpy) and its JAX twin used by the gradient engine."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.engines.forward_jax import model_intensity, tilted_propagators
from phaser.physics.aberrations import aberration_from_name
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import fft_frequencies, real_space_sampling_A
from phaser.physics.multislice import forward_intensity, shifted_probes
from phaser.physics.probe import focused_probe
from phaser.physics.propagation import fresnel_propagator
from phaser.physics.shift import fourier_shift

N = 32
SHAPE = (N, N)
OBJECT_SHAPE = (64, 64)
WAVELENGTH = electron_wavelength_A(200.0)
SAMPLING = real_space_sampling_A(WAVELENGTH, SHAPE, 2.0)


def _probe_modes(n_modes: int = 2) -> np.ndarray:
    """``n_modes`` distinct probes (defocus 100 A, then more defocus), total intensity 1 each."""
    modes = [
        focused_probe(
            np,
            SHAPE,
            SAMPLING,
            WAVELENGTH,
            20.0,
            [aberration_from_name("c1", 100.0 + 60.0 * m)],
            dtype=np.float64,
        )
        for m in range(n_modes)
    ]
    return np.stack(modes) * np.sqrt([1.0, 0.3][:n_modes])[:, None, None]


def _random_phase_object(rng, n_slices: int, strength: float = 0.5) -> np.ndarray:
    phase = rng.normal(size=(n_slices, *OBJECT_SHAPE))
    # smooth it a little so that it looks like a potential, not white noise
    kernel = np.exp(
        -(np.fft.fftfreq(OBJECT_SHAPE[0])[:, None] ** 2 + np.fft.fftfreq(OBJECT_SHAPE[1])[None, :] ** 2) * 40
    )
    phase = np.real(np.fft.ifft2(np.fft.fft2(phase) * kernel))
    phase *= strength / phase.std()
    return np.exp(1j * phase)


def _random_positions(rng, n: int) -> np.ndarray:
    """Positions [px] with the whole probe window inside the object."""
    lo, hi = N // 2 + 1, OBJECT_SHAPE[0] - N // 2 - 2
    return rng.uniform(lo, hi, size=(n, 2))


def _props(n_slices: int, dz: float = 10.0, bwlim=2 / 3) -> np.ndarray:
    prop = fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, dz, bwlim_frac=bwlim, dtype=np.float64)
    return np.broadcast_to(prop, (n_slices - 1, *SHAPE)).copy()


def _probe_diffraction(modes: np.ndarray) -> np.ndarray:
    return np.sum(np.abs(np.fft.fft2(modes, norm="ortho")) ** 2, axis=0)


def test_vacuum_gives_probe_diffraction():
    modes = _probe_modes(2)
    obj = np.ones((1, *OBJECT_SHAPE), dtype=np.complex128)
    positions = np.array([[32.0, 32.0], [30.0, 35.0]])
    out = forward_intensity(np, modes, obj, positions, np.ones((0, *SHAPE)))
    expected = _probe_diffraction(modes)
    for pattern in out:
        np.testing.assert_allclose(pattern, expected, atol=1e-12 * expected.max())
    assert out.sum(axis=(-2, -1)) == pytest.approx([1.3, 1.3], rel=1e-10)


def test_vacuum_sub_pixel_positions_leave_intensity_unchanged():
    modes = _probe_modes(2)
    obj = np.ones((2, *OBJECT_SHAPE), dtype=np.complex128)
    positions = _random_positions(np.random.default_rng(0), 6)
    assert np.any(np.abs(positions - np.round(positions)) > 0.2)
    out = forward_intensity(np, modes, obj, positions, _props(2, bwlim=None))
    expected = _probe_diffraction(modes)
    for pattern in out:
        np.testing.assert_allclose(pattern, expected, atol=1e-10 * expected.max())


def test_two_slices_at_zero_distance_equal_their_product():
    rng = np.random.default_rng(1)
    modes = _probe_modes(2)
    two = _random_phase_object(rng, 2) * rng.uniform(0.8, 1.0, size=(2, *OBJECT_SHAPE))
    one = (two[0] * two[1])[None]
    positions = _random_positions(rng, 5)
    split = forward_intensity(np, modes, two, positions, _props(2, dz=0.0, bwlim=None))
    merged = forward_intensity(np, modes, one, positions, np.ones((0, *SHAPE)))
    np.testing.assert_allclose(split, merged, atol=1e-10 * merged.max())
    # and a finite gap makes a difference (the test is not vacuous)
    apart = forward_intensity(np, modes, two, positions, _props(2, dz=20.0, bwlim=None))
    assert np.max(np.abs(apart - merged)) > 1e-3 * merged.max()


def test_pure_phase_object_conserves_intensity():
    rng = np.random.default_rng(2)
    modes = _probe_modes(2)
    obj = _random_phase_object(rng, 3, strength=1.0)
    out = forward_intensity(np, modes, obj, _random_positions(rng, 5), _props(3, dz=15.0, bwlim=None))
    np.testing.assert_allclose(out.sum(axis=(-2, -1)), np.sum(np.abs(modes) ** 2), rtol=1e-10)


def test_absorbing_object_loses_intensity():
    rng = np.random.default_rng(3)
    modes = _probe_modes(1)
    obj = 0.9 * _random_phase_object(rng, 1)
    out = forward_intensity(np, modes, obj, _random_positions(rng, 3), np.ones((0, *SHAPE)))
    np.testing.assert_allclose(out.sum(axis=(-2, -1)), 0.81 * np.sum(np.abs(modes) ** 2), rtol=1e-10)


def test_integer_fourier_shift_is_a_roll():
    rng = np.random.default_rng(4)
    image = rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)
    shifted = fourier_shift(np, image, np.array([3.0, -5.0]))
    np.testing.assert_allclose(shifted, np.roll(image, (3, -5), axis=(0, 1)), atol=1e-12)
    modes = _probe_modes(2)
    probes = shifted_probes(np, np.fft.fft2(modes), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(probes[0], np.roll(modes, (1, 2), axis=(-2, -1)), atol=1e-12)


def test_integer_position_shift_equals_rolled_object():
    rng = np.random.default_rng(5)
    modes = _probe_modes(2)
    obj = _random_phase_object(rng, 2)
    positions = rng.uniform(20.0, 40.0, size=(4, 2))  # windows stay inside before and after the shift
    shift = np.array([2.0, 3.0])
    moved = forward_intensity(np, modes, obj, positions + shift, _props(2))
    # rolled[i] = obj[i + shift]: what the probe sees at ``p + shift`` it now sees at ``p``
    rolled = forward_intensity(np, modes, np.roll(obj, (-2, -3), axis=(-2, -1)), positions, _props(2))
    np.testing.assert_allclose(moved, rolled, atol=1e-10 * rolled.max())


def _relative_max_difference(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("with_tilt", [False, True])
def test_jax_model_matches_numpy(with_tilt):
    rng = np.random.default_rng(6)
    n_slices, dz = 2, 12.0
    modes = _probe_modes(2)
    obj = _random_phase_object(rng, n_slices, strength=0.8) * rng.uniform(0.85, 1.0, size=(n_slices, *OBJECT_SHAPE))
    positions = _random_positions(rng, 7)
    thicknesses = np.full(n_slices, dz)
    base = _props(n_slices, dz)
    tilt = rng.uniform(-20.0, 20.0, size=(len(positions), 2)) if with_tilt else np.zeros((len(positions), 2))

    per_position = np.stack(
        [
            np.stack(
                [
                    fresnel_propagator(np, SHAPE, SAMPLING, WAVELENGTH, dz, tilt_mrad=tuple(t), dtype=np.float64)
                    for _ in range(n_slices - 1)
                ]
            )
            for t in tilt
        ]
    )  # (B, S-1, N, N)
    expected = forward_intensity(np, modes, obj, positions, per_position)

    ky, kx = fft_frequencies(np, SHAPE, SAMPLING, np.float64)
    jax_props = tilted_propagators(
        jnp.asarray(base, jnp.complex64),
        jnp.asarray(thicknesses, jnp.float32),
        jnp.asarray(ky[:, 0], jnp.float32),
        jnp.asarray(kx[0], jnp.float32),
        jnp.asarray(tilt, jnp.float32),
    )
    np.testing.assert_allclose(np.asarray(jax_props), per_position, atol=2e-5)
    got = model_intensity(
        jnp.asarray(modes, jnp.complex64),
        jnp.asarray(obj, jnp.complex64),
        jnp.asarray(positions, jnp.float32),
        jax_props,
    )
    assert got.shape == expected.shape and got.dtype == jnp.float32
    assert _relative_max_difference(got, expected) < 1e-5
    if not with_tilt:
        # the shared (S-1, N, N) propagators give the same as per-position ones
        shared = model_intensity(
            jnp.asarray(modes, jnp.complex64),
            jnp.asarray(obj, jnp.complex64),
            jnp.asarray(positions, jnp.float32),
            jnp.asarray(base, jnp.complex64),
        )
        assert _relative_max_difference(shared, expected) < 1e-5
    else:
        # tilt matters at these angles: the test would notice if it were ignored
        untilted = forward_intensity(np, modes, obj, positions, base)
        assert _relative_max_difference(untilted, expected) > 1e-3
