"""Tests of phaser.metrics.truth: the reconstruction's phase against a known object."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.metrics import (
    frame_offset_px,
    object_phase,
    phase_error_vs_truth,
    potential_to_phase,
    resample_to_grid,
)
from phaser.physics.constants import interaction_constant
from phaser.state import ReconsState

rng = np.random.default_rng(11)
ATOMS_A = rng.uniform(2.0, 30.0, size=(60, 2))  # atom centres [A] in the truth frame
HEIGHTS = rng.uniform(0.1, 0.5, size=60)


def atoms_phase(shape, sampling_A, origin_A=(0.0, 0.0), sigma_A=0.6, heights=HEIGHTS):
    """Gaussian atoms [rad] sampled on a grid whose pixel (0, 0) is at ``origin_A`` [A]."""
    y = origin_A[0] + np.arange(shape[0])[:, None] * sampling_A[0]
    x = origin_A[1] + np.arange(shape[1])[None, :] * sampling_A[1]
    out = np.zeros(shape)
    for (cy, cx), height in zip(ATOMS_A, heights, strict=True):
        out += height * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma_A**2))
    return out


def raster_px(start=16, stop=48, step=2):
    grid = np.arange(start, stop, step, dtype=np.float64)
    return np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)


def test_potential_to_phase_uses_the_interaction_constant():
    assert interaction_constant(300.0) == pytest.approx(6.5262e-4, rel=1e-4)
    assert potential_to_phase(100.0, 300.0) == pytest.approx(100 * 6.5262e-4, rel=1e-4)
    np.testing.assert_allclose(potential_to_phase(np.ones(3), 200.0), interaction_constant(200.0))


def test_object_phase_sum_and_product():
    phases = np.stack([np.full((4, 4), 2.0), np.full((4, 4), 2.0)])
    transmission = np.exp(1j * phases)
    np.testing.assert_allclose(object_phase(transmission), 4.0)
    np.testing.assert_allclose(object_phase(transmission, "product"), 4.0 - 2 * np.pi)
    np.testing.assert_allclose(object_phase(transmission[0]), 2.0)


def test_identical_phases_score_ideally():
    truth = atoms_phase((64, 64), (0.5, 0.5))
    scores = phase_error_vs_truth(truth, truth, raster_px(), 4.0, sampling_A=(0.5, 0.5))
    assert scores["rmse_rad"] < 1e-9
    assert scores["ssim"] == pytest.approx(1.0)
    assert scores["frc_resolution_A"] == pytest.approx(1.0)  # no crossing up to Nyquist
    np.testing.assert_allclose(scores["shift_px"], 0.0, atol=1e-9)
    assert scores["offset_rad"] == pytest.approx(0.0, abs=1e-9)
    assert scores["mask_pixels"] > 900


def test_shift_offset_and_ramp_of_the_reconstruction_are_removed():
    sampling = (0.5, 0.5)
    truth = atoms_phase((64, 64), sampling)
    # reconstruction content sits 0.3 px lower and 0.6 px left, with an offset and a ramp
    recon = atoms_phase((64, 64), sampling, origin_A=(-0.15, 0.3))
    recon = recon - 1.2 + 0.004 * np.arange(64)[None, :]
    scores = phase_error_vs_truth(recon, truth, raster_px(), 4.0, sampling_A=sampling)
    np.testing.assert_allclose(scores["shift_px"], (-0.3, 0.6), atol=0.05)
    assert scores["rmse_rad"] < 0.01
    assert scores["ssim"] > 0.99
    unaligned_error = np.sqrt(np.mean((recon - truth)[16:48, 16:48] ** 2))
    assert unaligned_error > 1.0


def test_a_finer_truth_in_another_frame_is_resampled_onto_the_reconstruction():
    recon_sampling, truth_sampling = (0.5, 0.5), (0.25, 0.25)
    recon_origin = (4.0, 3.0)  # the reconstruction's pixel (0, 0) in the truth frame [A]
    recon = atoms_phase((48, 48), recon_sampling, origin_A=recon_origin)
    truth = atoms_phase((128, 128), truth_sampling)
    positions_px = raster_px(12, 36)
    truth_positions_A = positions_px * 0.5 + np.array(recon_origin)
    offset = frame_offset_px(positions_px * 0.5, truth_positions_A, recon_sampling)
    np.testing.assert_allclose(offset, (-8.0, -6.0))
    on_grid = resample_to_grid(truth, truth_sampling, recon_sampling, (48, 48), offset)
    assert np.sqrt(np.mean((on_grid - recon)[12:36, 12:36] ** 2)) < 0.01 * np.ptp(recon)
    scores = phase_error_vs_truth(
        recon,
        truth,
        positions_px,
        3.0,
        sampling_A=recon_sampling,
        truth_sampling_A=truth_sampling,
        truth_offset_px=offset,
    )
    assert scores["rmse_rad"] < 0.01 * np.ptp(recon)
    np.testing.assert_allclose(scores["shift_px"], 0.0, atol=0.05)


def test_state_input_and_per_slice_scores():
    sampling = (0.5, 0.5)
    slices = np.stack([atoms_phase((64, 64), sampling, heights=HEIGHTS * f) for f in (0.4, 0.6)])
    y, x = np.indices((16, 16)) - 8
    state = ReconsState(
        kv=300.0,
        wavelength_A=0.0197,
        sampling_A=sampling,
        probe_modes=(np.hypot(y, x) <= 5).astype(np.complex64)[None],
        object_slices=np.exp(1j * (slices + 0.1)).astype(np.complex64),
        slice_thicknesses_A=np.array([5.0, 5.0]),
        positions_A=raster_px() * 0.5,
        initial_positions_A=raster_px() * 0.5,
        tilt_mrad=np.zeros((256, 2)),
    )
    scores = phase_error_vs_truth(state, np.exp(1j * slices))
    assert scores["probe_radius_px"] == pytest.approx(5 / np.sqrt(2), abs=0.5)
    assert scores["rmse_rad"] < 1e-5
    assert scores["offset_rad"] == pytest.approx(0.2, abs=1e-5)
    assert scores["rmse_potential_VA"] == pytest.approx(scores["rmse_rad"] / interaction_constant(300))
    assert len(scores["per_slice"]) == 2
    for slice_scores in scores["per_slice"]:
        assert slice_scores["rmse_rad"] < 1e-5
        assert slice_scores["offset_rad"] == pytest.approx(0.1, abs=1e-5)
    with pytest.raises(ValueError, match="positions_px"):
        phase_error_vs_truth(slices, slices)
