"""Scores without ground truth: the data loss at held-out positions, and two-half FRC.

A reconstruction run on the training positions of :func:`split_holdout` never sees the held-out
patterns; how well its object and probe predict them (:func:`held_out_loss`) measures what it
learned about the specimen rather than about the noise. Two reconstructions of two disjoint
halves of the data give a resolution estimate from their FRC (:func:`two_half_frc`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phaser.metrics.align import align_to, illuminated_mask, mask_bounding_box, probe_radius_px
from phaser.metrics.frc import FRCResult, frc
from phaser.metrics.truth import object_phase
from phaser.noise import NOISE_PROPS, noise_loss
from phaser.physics.multislice import (
    exit_waves,
    far_field,
    intensity,
    object_patches,
    shifted_probes,
)
from phaser.physics.propagation import gap_propagators
from phaser.physics.shift import phase_ramp
from phaser.state import ReconsState


def split_holdout(n_positions: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random split of ``range(n_positions)`` into sorted ``(train_idx, heldout_idx)``.

    ``round(fraction * n_positions)`` positions (at least 1, at most ``n_positions - 1``) are held
    out; the same ``seed`` gives the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n_positions < 2:
        raise ValueError(f"need at least 2 positions to hold some out, got {n_positions}")
    n_heldout = min(max(round(fraction * n_positions), 1), n_positions - 1)
    order = np.random.default_rng(seed).permutation(n_positions)
    return np.sort(order[n_heldout:]), np.sort(order[:n_heldout])


def noise_params(noise_model: str, params: dict[str, float] | None = None) -> dict[str, float]:
    """The numbers of built-in noise model ``noise_model``: its defaults updated by ``params``
    (validated by the model's props class)."""
    if noise_model not in NOISE_PROPS:
        raise ValueError(f"unknown noise model {noise_model!r}: known are {', '.join(NOISE_PROPS)}")
    return NOISE_PROPS[noise_model](**(params or {})).model_dump()


def slice_propagators(state: ReconsState, indices: Any, bwlim_frac: float | None = 2.0 / 3.0) -> np.ndarray:
    """``(S-1, N, N)`` Fresnel propagators of the state's slice gaps, or ``(B, S-1, N, N)`` with
    the per-position tilt ramps when the state has a tilt (as the gradient engine builds them)."""
    shape, n_slices = state.probe_shape, state.n_slices
    if n_slices == 1:
        return np.ones((0, *shape), dtype=np.complex128)
    all_thicknesses = np.asarray(state.slice_thicknesses_A, dtype=np.float64)
    thicknesses = all_thicknesses[: n_slices - 1]
    base = gap_propagators(np, shape, state.sampling_A, state.wavelength_A, all_thicknesses, bwlim_frac, np.float64)
    tilt = np.asarray(state.tilt_mrad, dtype=np.float64)[np.asarray(indices, dtype=np.int64)]
    if not np.any(tilt):
        return base
    # the lateral shift per gap is dz * tan(tilt), in pixels dz * tan(tilt) / sampling
    shift_px = np.tan(tilt * 1e-3)[:, None, :] * thicknesses[None, :, None] / np.asarray(state.sampling_A)
    return base[None] * phase_ramp(np, shape, shift_px)


def model_intensities(state: ReconsState, indices: Any, bwlim_frac: float | None = 2.0 / 3.0) -> np.ndarray:
    """Modelled intensities ``(B, N, N)`` [electrons] of ``state`` at positions ``indices``,
    zero frequency at pixel 0, computed with numpy in complex128.

    The multislice model of :mod:`phaser.physics.multislice` with the gradient engine's choices:
    Fresnel propagators over the first ``S - 1`` slice thicknesses, band-limited to
    ``bwlim_frac`` of Nyquist, the state's tilt, and patches clamped inside the object.
    """
    indices = np.asarray(indices, dtype=np.int64)
    probe_modes = np.asarray(state.probe_modes, dtype=np.complex128)
    obj = np.asarray(state.object_slices, dtype=np.complex128)
    positions = np.asarray(state.positions_A, dtype=np.float64)[indices] / np.asarray(state.sampling_A)
    patch_shape = probe_modes.shape[-2:]
    centre = np.array([patch_shape[0] // 2, patch_shape[1] // 2])
    limit = np.array([obj.shape[-2] - patch_shape[0], obj.shape[-1] - patch_shape[1]])
    top_left = np.clip(np.round(positions) - centre, 0, limit).astype(np.int64)
    probes = shifted_probes(np, np.fft.fft2(probe_modes), positions - (top_left + centre))
    patches = object_patches(np, obj, top_left, patch_shape)
    waves = exit_waves(np, probes, patches, slice_propagators(state, indices, bwlim_frac))
    return intensity(np, far_field(np, waves))


def held_out_loss(
    state: ReconsState,
    patterns: Any,
    indices: Any,
    noise_model: str = "poisson",
    params: dict[str, float] | None = None,
    bwlim_frac: float | None = 2.0 / 3.0,
    batch_size: int = 64,
) -> float:
    """Mean noise-model loss per pattern of ``state``'s model at held-out positions ``indices``.

    ``patterns`` are the measured intensities [electrons], ``(P, N, N)`` or
    ``(scan_y, scan_x, N, N)``, centred (zero frequency at ``N//2``), indexed like the state's
    positions. The loss is :mod:`phaser.noise`'s ``noise_model`` with ``params`` (defaults of
    its props otherwise) on :func:`model_intensities`: the quantity the engines report per
    iteration, so the two are comparable. Lower is better; its floor is set by the noise (about
    half a unit per detector pixel for Poisson counts). Alignment: none needed; the state's
    positions at ``indices`` are used as they are (a run that never saw those patterns has not
    refined them).
    """
    patterns = np.asarray(patterns)
    patterns = patterns.reshape(-1, *patterns.shape[-2:])
    if patterns.shape[0] != state.n_positions:
        raise ValueError(f"{patterns.shape[0]} patterns for {state.n_positions} positions")
    indices = np.asarray(indices, dtype=np.int64).ravel()
    if indices.size == 0:
        raise ValueError("no held-out positions")
    numbers = noise_params(noise_model, params)
    loss_fn = noise_loss(noise_model)
    losses = []
    for start in range(0, indices.size, batch_size):
        batch = indices[start : start + batch_size]
        model = model_intensities(state, batch, bwlim_frac)
        measured = np.fft.ifftshift(patterns[batch].astype(np.float64), axes=(-2, -1))
        losses.append(loss_fn(np, model, measured, numbers))
    return float(np.mean(np.concatenate(losses)))


def two_half_frc(
    state_a: ReconsState,
    state_b: ReconsState,
    probe_radius: float | None = None,
    n_bins: int | None = None,
    window: str | None = "tukey",
) -> FRCResult:
    """FRC of the projected phases of two reconstructions of disjoint halves of one dataset.

    Both must share grid and pixel size. The phase of ``state_b`` (sum over slices) is aligned to
    that of ``state_a`` (:func:`align_to`: sub-pixel shift, offset, ramp) inside the region that
    the probes of both cover (:func:`illuminated_mask`, radius ``probe_radius`` [px], default the
    half-intensity radius of ``state_a``'s probe), and the FRC is taken over that region's
    bounding box (each phase's plane removed) with frequencies in 1/A. Higher is better; read
    the resolution of one half with ``frc_resolution(result, "half-bit")`` (the full data set
    does somewhat better).
    """
    phase_a = object_phase(state_a.object_slices)
    phase_b = object_phase(state_b.object_slices)
    if phase_a.shape != phase_b.shape:
        raise ValueError(f"the objects differ in shape: {phase_a.shape} vs {phase_b.shape}")
    if not np.allclose(state_a.sampling_A, state_b.sampling_A):
        raise ValueError(f"the pixel sizes differ: {state_a.sampling_A} vs {state_b.sampling_A} A")
    radius = probe_radius_px(state_a.probe_modes) if probe_radius is None else probe_radius
    positions = np.concatenate([state_a.positions_px(np), state_b.positions_px(np)])
    mask = illuminated_mask(phase_a.shape, positions, radius)
    pair = align_to(phase_a, phase_b, mask)
    region = mask_bounding_box(mask)
    return frc(
        pair.image_aligned[region],
        phase_a[region],
        n_bins=n_bins,
        sampling_A=state_a.sampling_A,
        window=window,
        detrend=True,
    )
