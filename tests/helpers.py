"""Shared test helpers: comparing a reconstruction to the simulated truth."""

from __future__ import annotations

import numpy as np

from phaser.physics.shift import fourier_shift


def truth_on_recon_grid(truth_phase: np.ndarray, offset_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Truth phase resampled on the reconstruction grid, which is shifted by ``offset_px``."""
    padded = np.zeros(shape)
    ny, nx = min(shape[0], truth_phase.shape[0]), min(shape[1], truth_phase.shape[1])
    padded[:ny, :nx] = truth_phase[:ny, :nx]
    return np.real(fourier_shift(np, padded, np.asarray(offset_px, dtype=np.float64)))


def phase_error(
    recon_phase: np.ndarray,
    truth_phase: np.ndarray,
    recon_positions_A: np.ndarray,
    truth_positions_A: np.ndarray,
    sampling_A: tuple[float, float],
    margin_px: int = 3,
) -> float:
    """RMS phase difference [rad] inside the scanned area after removing the constant phase offset."""
    offset = np.mean(recon_positions_A - truth_positions_A, axis=0) / np.asarray(sampling_A)
    truth = truth_on_recon_grid(truth_phase, offset, recon_phase.shape)
    pos = recon_positions_A / np.asarray(sampling_A)
    lo = np.ceil(pos.min(axis=0)).astype(int) + margin_px
    hi = np.floor(pos.max(axis=0)).astype(int) - margin_px
    diff = (recon_phase - truth)[lo[0] : hi[0], lo[1] : hi[1]]
    diff = diff - diff.mean()
    return float(np.sqrt(np.mean(diff**2)))


# The small simulated dataset most tests share: 200 kV, 20 mrad, 100 A defocus (C10), 32x32 patterns at
# 2 mrad per pixel, 0.6 A steps on an 8x8 scan; DATASET_DEFAULTS adds 1e5 electrons per pattern, seed 0.
# Tests override what they vary; DATASET_GEOMETRY alone gives noiseless data.
DATASET_GEOMETRY = dict(
    kv=200.0,
    conv_angle_mrad=20.0,
    defocus_A=100.0,
    diff_step_mrad=2.0,
    scan_step_A=0.6,
    pattern_shape=(32, 32),
    scan_shape=(8, 8),
)
DATASET_DEFAULTS = dict(**DATASET_GEOMETRY, dose_per_pattern=1e5, seed=0)
FOCUSED_PROBE = {"type": "focused", "conv_angle": 20.0, "defocus": 100.0}


def simulated_file(path, **overrides):
    """Simulate :data:`DATASET_DEFAULTS` (with ``overrides``), write it to ``path``; returns (dataset, path)."""
    from phaser.simulate import simulate_dataset
    from phaser.simulate.files import write_dataset

    ds = simulate_dataset(**{**DATASET_DEFAULTS, **overrides})
    return ds, write_dataset(ds, path)


def plan_for(data_path, engines: list[dict], **fields) -> dict:
    """A plan mapping over ``data_path`` with the focused probe of the simulated data and ``engines``."""
    return {
        "name": "test",
        "backend": "jax",
        "seed": 0,
        "raw_data": {"type": "manual", "path": str(data_path)},
        "init": {"probe": dict(FOCUSED_PROBE)},
        "engines": engines,
        **fields,
    }
