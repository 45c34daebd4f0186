"""Tests of phaser.metrics.heldout: held-out data loss and two-half FRC."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.metrics import (
    frc_resolution,
    held_out_loss,
    model_intensities,
    noise_params,
    slice_propagators,
    split_holdout,
    two_half_frc,
)
from phaser.physics.propagation import fresnel_propagator
from phaser.simulate import SimulatedDataset, simulate_dataset
from phaser.state import ReconsState
from tests.helpers import DATASET_GEOMETRY


def state_from_truth(ds: SimulatedDataset, obj: np.ndarray | None = None) -> ReconsState:
    """A reconstruction state holding the dataset's truth (or another object)."""
    obj = ds.object if obj is None else obj
    return ReconsState(
        kv=ds.kv,
        wavelength_A=ds.wavelength_A,
        sampling_A=ds.sampling_A,
        probe_modes=ds.probe_modes,
        object_slices=obj,
        slice_thicknesses_A=np.array([ds.slice_thickness_A] * obj.shape[0]),
        positions_A=ds.positions_A,
        initial_positions_A=ds.positions_A.copy(),
        tilt_mrad=np.zeros_like(ds.positions_A),
        scan_shape=ds.scan_shape,
    )


@pytest.fixture(scope="module")
def noisy() -> SimulatedDataset:
    return simulate_dataset(**DATASET_GEOMETRY, dose_per_pattern=1e5, seed=1)


def test_split_holdout_is_a_reproducible_partition():
    train, heldout = split_holdout(64, 0.25, seed=3)
    assert len(heldout) == 16 and len(train) == 48
    np.testing.assert_array_equal(np.sort(np.concatenate([train, heldout])), np.arange(64))
    again = split_holdout(64, 0.25, seed=3)
    np.testing.assert_array_equal(again[1], heldout)
    assert not np.array_equal(split_holdout(64, 0.25, seed=4)[1], heldout)
    assert len(split_holdout(5, 0.01)[1]) == 1
    with pytest.raises(ValueError, match="fraction"):
        split_holdout(10, 1.0)


def test_noise_params_defaults_and_validation():
    assert noise_params("anscombe")["offset"] == 0.375
    assert noise_params("poisson", {"eps": 0.1})["eps"] == 0.1
    with pytest.raises(ValueError, match="unknown noise model"):
        noise_params("laplace")
    with pytest.raises(ValueError):
        noise_params("poisson", {"eps": -1.0})


def test_the_true_state_predicts_noiseless_data_exactly():
    ds = simulate_dataset(**DATASET_GEOMETRY)
    state = state_from_truth(ds)
    patterns = ds.patterns.reshape(-1, 32, 32)
    predicted = np.fft.fftshift(model_intensities(state, np.arange(5)), axes=(-2, -1))
    np.testing.assert_allclose(predicted, patterns[:5], rtol=1e-4, atol=1e-9)
    assert held_out_loss(state, ds.patterns, np.arange(10), "amplitude") < 1e-6


def test_held_out_loss_rises_when_the_model_is_wrong(noisy):
    _, heldout = split_holdout(64, 0.25, seed=0)
    true_state = state_from_truth(noisy)
    blank_state = state_from_truth(noisy, np.ones_like(noisy.object))
    for model in ("poisson", "amplitude", "anscombe", "gaussian"):
        true_loss = held_out_loss(true_state, noisy.patterns, heldout, model)
        blank_loss = held_out_loss(blank_state, noisy.patterns, heldout, model)
        assert blank_loss > 3 * true_loss, model
    # the Poisson deviance of the truth is about half a unit per detector pixel
    assert held_out_loss(true_state, noisy.patterns, heldout) == pytest.approx(512, rel=0.2)


def test_multislice_and_tilt_follow_the_engine_model():
    ds = simulate_dataset(**DATASET_GEOMETRY, n_slices=2, slice_thickness_A=8.0)
    state = state_from_truth(ds)
    predicted = np.fft.fftshift(model_intensities(state, [0, 9, 30], bwlim_frac=None), axes=(-2, -1))
    np.testing.assert_allclose(predicted, ds.patterns.reshape(-1, 32, 32)[[0, 9, 30]], rtol=1e-3, atol=1e-7)
    tilt = np.array([[3.0, -2.0], [0.0, 0.0]])
    state.tilt_mrad = np.zeros_like(ds.positions_A)
    state.tilt_mrad[[4, 7]] = tilt
    props = slice_propagators(state, np.array([4, 7]), 2.0 / 3.0)
    for b in range(2):
        expected = fresnel_propagator(
            np,
            (32, 32),
            ds.sampling_A,
            ds.wavelength_A,
            8.0,
            tilt_mrad=tuple(tilt[b]),
            dtype=np.float64,
        )
        np.testing.assert_allclose(props[b, 0], expected, atol=1e-6)


def test_two_half_frc(noisy):
    state = state_from_truth(noisy)
    identical = two_half_frc(state, state)
    np.testing.assert_allclose(identical.curve[1:], 1.0, atol=1e-9)
    rng = np.random.default_rng(0)
    phase = np.angle(noisy.object)

    def noisy_half(level: float) -> ReconsState:
        return state_from_truth(noisy, np.exp(1j * (phase + level * rng.normal(size=phase.shape))))

    clean = two_half_frc(noisy_half(0.02), noisy_half(0.02))
    rough = two_half_frc(noisy_half(0.2), noisy_half(0.2))
    assert clean.frequency_unit == "1/A"
    assert np.nanmean(rough.curve[1:]) < np.nanmean(clean.curve[1:])
    assert frc_resolution(rough, "half-bit").resolution > frc_resolution(clean, "half-bit").resolution
