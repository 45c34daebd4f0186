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
