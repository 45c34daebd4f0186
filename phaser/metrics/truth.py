"""Scores of a reconstruction against a known (simulated) object.

The truth is put on the reconstruction's grid (resampled when the pixel sizes differ, placed by
the offset between the two position sets), the reconstruction's projected phase is aligned to it
inside the illuminated region (sub-pixel shift, constant offset, ramp; :func:`align_to`), and the
aligned pair is compared pixel by pixel (RMSE, SSIM) and by FRC.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from phaser.metrics import align
from phaser.metrics.align import AlignedPair, align_to, illuminated_mask, mask_bounding_box
from phaser.metrics.frc import frc, frc_resolution
from phaser.metrics.images import rmse, ssim
from phaser.physics.constants import interaction_constant
from phaser.state import ReconsState

# Smallest side [px] of the compared region for which an FRC is reported.
MIN_FRC_SIDE_PX = 8


def potential_to_phase(potential_VA: Any, kv: float) -> Any:
    """Phase shift [rad] of a projected potential [V*A] for electrons of ``kv`` [kV].

    ``phase = sigma * V`` with the interaction constant ``sigma`` [rad/(V*A)] of
    :func:`phaser.physics.constants.interaction_constant` (6.526e-4 at 300 kV).
    """
    return interaction_constant(kv) * np.asarray(potential_VA)


def object_phase(object_slices: Any, combine: str = "sum") -> np.ndarray:
    """Projected phase [rad] ``(Ny, Nx)`` of a transmission ``(S, Ny, Nx)`` or ``(Ny, Nx)``.

    ``combine="sum"``: the sum over slices of each slice's phase (no wrapping while every slice
    stays within (-pi, pi]); ``"product"``: the phase of the product of the slices, wrapped to
    (-pi, pi]. The two agree up to multiples of 2 pi.
    """
    transmission = np.asarray(object_slices)
    transmission = transmission[None] if transmission.ndim == 2 else transmission
    if combine == "sum":
        return np.sum(np.angle(transmission), axis=0)
    if combine == "product":
        return np.angle(np.prod(transmission.astype(np.complex128), axis=0))
    raise ValueError(f"unknown combine {combine!r}: use 'sum' or 'product'")


def frame_offset_px(positions_A: Any, truth_positions_A: Any, sampling_A: tuple[float, float]) -> np.ndarray:
    """Where the truth frame's origin lies in the reconstruction frame, ``(dy, dx)`` [recon px]:
    the mean of ``positions_A - truth_positions_A`` (the same scan in both frames) over the
    reconstruction's pixel size [A]."""
    delta = np.mean(np.asarray(positions_A) - np.asarray(truth_positions_A), axis=0)
    return delta / np.asarray(sampling_A, dtype=np.float64)


def resample_to_grid(
    image: Any,
    image_sampling_A: tuple[float, float],
    sampling_A: tuple[float, float],
    shape: tuple[int, int],
    offset_px: Any = (0.0, 0.0),
) -> np.ndarray:
    """Real ``image`` (pixel size ``image_sampling_A`` [A]) on a ``shape`` grid of ``sampling_A``.

    The grid's pixel ``(i, j)`` is at ``((i - offset_y) * dy, (j - offset_x) * dx)`` A in the
    image's frame, ``offset_px`` in grid pixels (:func:`frame_offset_px`). Values come from
    cubic-spline interpolation (:func:`scipy.ndimage.map_coordinates`, edge values repeated
    beyond the image), which reproduces the image exactly on coinciding pixels. When the image is
    finer than the grid it is first band-limited to the grid's Nyquist frequency by zeroing its
    FFT beyond it (the image is treated as periodic), so the coarse grid does not alias it.
    """
    image = np.asarray(image, dtype=np.float64)
    ratio = np.asarray(sampling_A, dtype=np.float64) / np.asarray(image_sampling_A, dtype=np.float64)
    if np.any(ratio > 1 + 1e-9):
        ky = np.abs(np.fft.fftfreq(image.shape[0]))[:, None] * ratio[0]
        kx = np.abs(np.fft.fftfreq(image.shape[1]))[None, :] * ratio[1]
        image = np.real(np.fft.ifft2(np.fft.fft2(image) * ((ky <= 0.5) & (kx <= 0.5))))
    grid = np.indices(shape, dtype=np.float64)
    offset = np.asarray(offset_px, dtype=np.float64)
    coordinates = (grid - offset[:, None, None]) * ratio[:, None, None]
    return map_coordinates(image, coordinates, order=3, mode="nearest")


def _slice_phases(values: Any) -> np.ndarray:
    """``(S, Ny, Nx)`` per-slice phases [rad] from complex transmissions or real phases."""
    values = np.asarray(values)
    values = values[None] if values.ndim == 2 else values
    return np.angle(values) if np.iscomplexobj(values) else values.astype(np.float64)


def _projected(slice_phases: np.ndarray, combine: str) -> np.ndarray:
    """Projected phase of per-slice phases, as :func:`object_phase` makes it."""
    if combine not in ("sum", "product"):
        raise ValueError(f"unknown combine {combine!r}: use 'sum' or 'product'")
    total = slice_phases.sum(axis=0)
    return np.angle(np.exp(1j * total)) if combine == "product" else total


def align_to_truth(
    recon_phase: Any,
    truth_phase: Any,
    positions_px: Any,
    probe_radius_px: float,
    *,
    sampling_A: tuple[float, float] | None = None,
    truth_sampling_A: tuple[float, float] | None = None,
    truth_offset_px: Any = (0.0, 0.0),
    shift: bool | tuple[float, float] = True,
    ramp: bool = True,
    scale: bool = False,
    upsample: int = 20,
) -> AlignedPair:
    """The reconstruction's phase ``(Ny, Nx)`` [rad] aligned to the truth's on its grid.

    The truth ``(Ny', Nx')`` [rad] is resampled onto the reconstruction grid
    (:func:`resample_to_grid`; same pixel size when ``truth_sampling_A`` is None), the mask is
    :func:`illuminated_mask` of ``positions_px`` (reconstruction pixels) and ``probe_radius_px``,
    and :func:`align_to` fits shift, offset, ramp (and optionally scale) with the truth as
    reference.
    """
    recon_phase = np.asarray(recon_phase, dtype=np.float64)
    if sampling_A is None and truth_sampling_A is not None:
        raise ValueError("truth_sampling_A needs the reconstruction's sampling_A as well")
    sampling = sampling_A if sampling_A is not None else (1.0, 1.0)
    truth_on_grid = resample_to_grid(
        truth_phase, truth_sampling_A or sampling, sampling, recon_phase.shape, truth_offset_px
    )
    mask = illuminated_mask(recon_phase.shape, positions_px, probe_radius_px)
    return align_to(truth_on_grid, recon_phase, mask, shift=shift, ramp=ramp, scale=scale, upsample=upsample)


def pair_scores(pair: AlignedPair, sampling_A: tuple[float, float] | None = None) -> dict[str, Any]:
    """RMSE [image unit], SSIM and FRC resolutions of an :class:`AlignedPair` inside its mask.

    The FRC uses the bounding box of the mask, each image's plane removed (resolutions in A with
    ``sampling_A``, else px; nan when the box is under 8 px on a side). ``frc_at_nyquist`` is
    True when the 1/7 curve never falls below its threshold: the resolution is then only the
    bound set by the pixel size.
    """
    unit = "A" if sampling_A is not None else "px"
    region = mask_bounding_box(pair.mask)
    image, reference = pair.image_aligned[region], pair.reference[region]
    scores: dict[str, Any] = {
        "rmse_rad": rmse(pair.image_aligned, pair.reference, pair.mask),
        "ssim": ssim(pair.image_aligned, pair.reference, mask=pair.mask) if min(pair.mask.shape) >= 7 else math.nan,
        f"frc_resolution_{unit}": math.nan,
        f"frc_half_bit_resolution_{unit}": math.nan,
        "frc_at_nyquist": False,
    }
    if min(image.shape) >= MIN_FRC_SIDE_PX:
        curve = frc(image, reference, sampling_A=sampling_A, detrend=True)
        crossing = frc_resolution(curve, "1/7")
        scores[f"frc_resolution_{unit}"] = crossing.resolution
        scores["frc_at_nyquist"] = not crossing.crossed
        scores[f"frc_half_bit_resolution_{unit}"] = frc_resolution(curve, "half-bit").resolution
    return scores


def phase_error_vs_truth(
    recon: ReconsState | Any,
    truth_phase: Any,
    positions_px: Any = None,
    probe_radius_px: float | None = None,
    *,
    sampling_A: tuple[float, float] | None = None,
    truth_sampling_A: tuple[float, float] | None = None,
    truth_offset_px: Any = (0.0, 0.0),
    combine: str = "sum",
    ramp: bool = True,
    scale: bool = False,
    upsample: int = 20,
    kv: float | None = None,
) -> dict[str, Any]:
    """Phase error of a reconstruction against the truth, inside the illuminated region.

    Parameters
    ----------
    recon
        A :class:`ReconsState` (its object, positions, sampling, kv and, unless
        ``probe_radius_px`` is given, the radius holding half of its probe's intensity), or an
        array: complex transmission or real phases [rad], ``(S, Ny, Nx)`` or ``(Ny, Nx)``.
    truth_phase
        The truth as phases [rad] or complex transmission, ``(S', Ny', Nx')`` or ``(Ny', Nx')``.
    positions_px
        Scan positions ``(P, 2)`` in reconstruction pixels (default: the state's).
    probe_radius_px
        Radius [px] around each position of the compared region (:func:`illuminated_mask`).
    sampling_A, truth_sampling_A
        Pixel sizes [A] of the reconstruction and the truth (the truth is resampled when they
        differ; both None: one grid, pixel units).
    truth_offset_px
        The truth frame's origin in the reconstruction frame [recon px] (:func:`frame_offset_px`).
    combine
        How slices make the projected phase: ``"sum"`` of slice phases or phase of the
        ``"product"`` (:func:`object_phase`).
    ramp, scale, upsample
        Passed to :func:`align_to` (the shift and constant offset are always fitted).
    kv
        Accelerating voltage [kV] (default: the state's); adds ``rmse_potential_VA``.

    Returns
    -------
    dict
        ``rmse_rad`` (lower is better) and ``ssim`` (higher is better, at most 1) of the aligned
        projected phases in the mask; ``frc_resolution_A`` and ``frc_half_bit_resolution_A``
        (``_px`` without a sampling; lower is better) of the mask's bounding box, and
        ``frc_at_nyquist`` (the 1/7 resolution is only the pixel-size bound);
        ``rmse_potential_VA`` [V*A] with a kv; the fitted ``shift_px`` ``[dy, dx]`` (of the
        reconstruction onto the truth), ``offset_rad``, ``ramp_rad_per_px`` ``[b, c]``,
        ``scale``; ``mask_pixels`` and ``probe_radius_px``. When both have the same number of
        slices (more than one), ``per_slice``: a list of ``{rmse_rad, ssim, offset_rad}``, each
        slice aligned with the shift of the projected phases and its own offset and ramp.
    """
    if isinstance(recon, ReconsState):
        slices = _slice_phases(recon.object_slices)
        positions_px = recon.positions_px(np) if positions_px is None else positions_px
        sampling_A = recon.sampling_A if sampling_A is None else sampling_A
        kv = recon.kv if kv is None else kv
        if probe_radius_px is None:
            probe_radius_px = align.probe_radius_px(recon.probe_modes)
    else:
        slices = _slice_phases(recon)
    if positions_px is None or probe_radius_px is None:
        raise ValueError("positions_px and probe_radius_px are needed when recon is an array")
    truth_slices = _slice_phases(truth_phase)
    recon_sum, truth_sum = _projected(slices, combine), _projected(truth_slices, combine)

    common = dict(
        sampling_A=sampling_A,
        truth_sampling_A=truth_sampling_A,
        truth_offset_px=truth_offset_px,
        ramp=ramp,
        scale=scale,
        upsample=upsample,
    )
    pair = align_to_truth(recon_sum, truth_sum, positions_px, probe_radius_px, **common)
    result = pair_scores(pair, sampling_A)
    if kv is not None:
        result["rmse_potential_VA"] = result["rmse_rad"] / interaction_constant(kv)
    result.update(
        shift_px=[pair.shift[0], pair.shift[1]],
        offset_rad=pair.offset,
        ramp_rad_per_px=[pair.ramp[0], pair.ramp[1]],
        scale=pair.scale,
        mask_pixels=int(pair.mask.sum()),
        probe_radius_px=float(probe_radius_px),
    )
    if slices.shape[0] > 1 and slices.shape[0] == truth_slices.shape[0]:
        common["shift"] = pair.shift
        result["per_slice"] = []
        for recon_slice, truth_slice in zip(slices, truth_slices, strict=True):
            slice_pair = align_to_truth(recon_slice, truth_slice, positions_px, probe_radius_px, **common)
            result["per_slice"].append(
                {
                    "rmse_rad": rmse(slice_pair.image_aligned, slice_pair.reference, slice_pair.mask),
                    "ssim": ssim(slice_pair.image_aligned, slice_pair.reference, mask=slice_pair.mask),
                    "offset_rad": slice_pair.offset,
                }
            )
    return result
