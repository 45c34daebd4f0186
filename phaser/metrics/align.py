"""Putting an image on top of a reference: sub-pixel shift, phase offset and ramp, and scale.

Reconstructed phases are defined only up to a constant (and, with position errors, a linear ramp)
and may sit a fraction of a pixel away from the truth; these are not errors of the reconstruction
and are removed before :mod:`phaser.metrics.images` compares pixels. Coordinates are pixel indices
``(y, x)`` of the arrays: pixel ``(i, j)`` is at ``(i, j)``, so positions in pixels are
``positions_A / sampling_A`` (the object frame of :class:`phaser.state.ReconsState`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree
from skimage.registration import phase_cross_correlation

from phaser.physics.shift import fourier_shift

# Width [px] of the cosine taper that fades an image to zero outside its mask before an FFT.
TAPER_PX = 8.0


@dataclass(frozen=True)
class AlignedPair:
    """An image aligned to a reference by :func:`align_to`.

    Attributes
    ----------
    image_aligned
        ``(shift(image) - background) / scale`` on the reference's grid. When the shift is not
        zero and ``mask`` does not cover the image, the image is faded out beyond the mask (grown
        by the shift + 2 px) before the shift, so only the mask's pixels have meaning.
    reference
        The reference, unchanged.
    mask
        Boolean ``(Ny, Nx)``: where the two were fitted and should be compared.
    shift
        ``(dy, dx)`` [px] applied to the image (content moved by ``+shift``).
    offset
        Constant ``a`` of the background [image unit, e.g. rad] removed after the shift.
    ramp
        ``(b, c)`` [image unit per px] of the background ``a + b*y + c*x``.
    scale
        Gain of the shifted image relative to the reference (1 unless fitted).
    """

    image_aligned: np.ndarray
    reference: np.ndarray
    mask: np.ndarray
    shift: tuple[float, float]
    offset: float
    ramp: tuple[float, float]
    scale: float

    @property
    def difference(self) -> np.ndarray:
        """``image_aligned - reference`` (meaningful inside ``mask``)."""
        return self.image_aligned - self.reference


def _mask_or_all(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"mask of shape {mask.shape} does not match image of shape {shape}")
    if not mask.any():
        raise ValueError("mask selects no pixel")
    return mask


def _plane_columns(shape: tuple[int, int], offset: bool, ramp: bool) -> tuple[list[np.ndarray], list[int]]:
    """Columns of the requested terms of ``a + b*y + c*x``, and their indices in (a, b, c)."""
    y, x = np.indices(shape, dtype=np.float64)
    columns, which = [], []
    if offset:
        columns.append(np.ones(shape))
        which.append(0)
    if ramp:
        columns += [y, x]
        which += [1, 2]
    return columns, which


def _least_squares(target: np.ndarray, columns: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    if not columns:
        return np.zeros(0)
    design = np.stack([c[mask] for c in columns], axis=1)
    return np.linalg.lstsq(design, target[mask], rcond=None)[0]


def background_image(coefficients: Any, shape: tuple[int, int]) -> np.ndarray:
    """The plane ``a + b*y + c*x`` over pixel indices for ``coefficients = (a, b, c)``."""
    a, b, c = (float(v) for v in coefficients)
    y, x = np.indices(shape, dtype=np.float64)
    return a + b * y + c * x


def fit_phase_background(diff: Any, mask: Any = None, ramp: bool = True) -> np.ndarray:
    """Least-squares ``(a, b, c)`` of ``a + b*y + c*x`` to real ``diff`` within ``mask``.

    ``a`` is in the unit of ``diff`` (rad for a phase difference), ``b`` and ``c`` in that unit
    per pixel (0 when ``ramp`` is False); ``y, x`` are pixel indices. Typically
    ``diff = image - reference``: subtracting :func:`background_image` of the result removes the
    constant phase offset and the phase ramp that ptychography cannot determine.
    """
    diff = np.asarray(diff, dtype=np.float64)
    mask = _mask_or_all(mask, diff.shape)
    columns, which = _plane_columns(diff.shape, True, ramp)
    coefficients = np.zeros(3)
    coefficients[which] = _least_squares(diff, columns, mask)
    return coefficients


def illuminated_mask(shape: tuple[int, int], positions_px: Any, probe_radius_px: float) -> np.ndarray:
    """Boolean ``shape`` mask of the pixels within ``probe_radius_px`` [px] of any scan position.

    ``positions_px`` ``(P, 2)`` are ``(y, x)`` in pixels of the same grid (pixel ``(i, j)`` at
    ``(i, j)``); a pixel is in the mask when its distance to the nearest position is at most
    the radius.
    """
    positions = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
    pixels = np.indices(shape, dtype=np.float64).reshape(2, -1).T
    distance, _ = cKDTree(positions).query(pixels, k=1)
    return (distance <= probe_radius_px).reshape(shape)


def mask_bounding_box(mask: Any) -> tuple[slice, slice]:
    """Row and column slices of the smallest rectangle holding every True pixel of ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("mask selects no pixel")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def probe_radius_px(probe_modes: Any, energy_fraction: float = 0.5) -> float:
    """Radius [px] of the disk around the probe's centroid holding ``energy_fraction`` of its
    intensity (all modes summed): the part of each probe that constrains the object well."""
    intensity = np.sum(np.abs(np.asarray(probe_modes)) ** 2, axis=tuple(range(np.ndim(probe_modes) - 2)))
    total = float(intensity.sum())
    if not total > 0:
        raise ValueError("the probe has no intensity")
    y, x = np.indices(intensity.shape, dtype=np.float64)
    cy, cx = float((intensity * y).sum() / total), float((intensity * x).sum() / total)
    radius = np.hypot(y - cy, x - cx).ravel()
    order = np.argsort(radius)
    cumulative = np.cumsum(intensity.ravel()[order]) / total
    return float(radius[order][np.searchsorted(cumulative, energy_fraction)])


def _soft_support(mask: np.ndarray, grow_px: float, taper_px: float = TAPER_PX) -> np.ndarray:
    """1 within ``grow_px`` of ``mask``, falling to 0 as a cosine over the next ``taper_px``."""
    if mask.all():
        return np.ones(mask.shape)
    distance = distance_transform_edt(~mask)
    t = np.clip((distance - grow_px) / taper_px, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(math.pi * t))


def _detrended(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` minus its own best plane in ``mask``, and that plane's coefficients."""
    plane = fit_phase_background(image, mask, ramp=True)
    return image - background_image(plane, image.shape), plane


def _shift_image(image: np.ndarray, mask: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image`` Fourier-shifted by ``shift`` [px] without ringing from its ramp or its borders.

    The image's own plane is shifted analytically, the rest through the FFT after fading it out
    beyond the mask grown by the shift (+2 px).
    """
    if shift == (0.0, 0.0):
        return image
    flat, plane = _detrended(image, mask)
    grow = math.ceil(max(abs(shift[0]), abs(shift[1]))) + 2.0
    moved = np.real(fourier_shift(np, flat * _soft_support(mask, grow), np.asarray(shift, dtype=np.float64)))
    a, b, c = plane
    # a plane moved by +s is the plane evaluated at (y - sy, x - sx)
    return moved + background_image((a - b * shift[0] - c * shift[1], b, c), image.shape)


def _correlation_peak(moving: np.ndarray, reference: np.ndarray, mask: np.ndarray, upsample: int) -> np.ndarray:
    support = _soft_support(mask, 0.0)
    moving_flat = _detrended(moving, mask)[0] * support
    reference_flat = _detrended(reference, mask)[0] * support
    return phase_cross_correlation(reference_flat, moving_flat, upsample_factor=upsample, normalization=None)[0]


def register_shift(
    moving: Any, reference: Any, upsample: int = 20, mask: Any = None, max_refinements: int = 4
) -> tuple[float, float]:
    """Shift ``(dy, dx)`` [px] that moves ``moving`` onto ``reference`` (real images, one grid).

    :func:`skimage.registration.phase_cross_correlation` (plain cross-correlation, refined on a
    ``1/upsample`` px grid by an upsampled DFT) after removing each image's best plane within
    ``mask`` and fading both to zero outside it, so ramps, offsets and unconstrained borders do
    not bias the peak. The shared fade pulls the peak towards zero shift, so the moving image is
    shifted by the estimate and registered again (up to ``max_refinements`` times) until the rest
    is below the precision. ``fourier_shift(np, moving, shift)`` is then close to ``reference``.
    Precision about ``1/(2*upsample)`` px; the search range is the whole (periodic) image.
    """
    moving = np.asarray(moving, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if moving.shape != reference.shape or moving.ndim != 2:
        raise ValueError(f"register_shift needs two 2D images of one shape, got {moving.shape} and {reference.shape}")
    mask = _mask_or_all(mask, moving.shape)
    total = _correlation_peak(moving, reference, mask, upsample)
    if not mask.all():
        for _ in range(max_refinements):
            shifted = _shift_image(moving, mask, (float(total[0]), float(total[1])))
            rest = _correlation_peak(shifted, reference, mask, upsample)
            total = total + rest
            if np.max(np.abs(rest)) < 0.5 / upsample:
                break
    return float(total[0]), float(total[1])


def align_to(
    reference: Any,
    image: Any,
    mask: Any = None,
    shift: bool | tuple[float, float] = True,
    offset: bool = True,
    ramp: bool = True,
    scale: bool = False,
    upsample: int = 20,
) -> AlignedPair:
    """Align real ``image`` to ``reference`` (same grid) within ``mask`` (default: everywhere).

    1. ``shift``: True registers a sub-pixel shift (:func:`register_shift`), a ``(dy, dx)`` [px]
       applies that shift, False applies none; the image moves by Fourier shift
       (:func:`phaser.physics.shift.fourier_shift`).
    2. The shifted image is fitted in the mask by least squares as
       ``scale * reference + a + b*y + c*x`` (``a`` only with ``offset``, ``b, c`` only with
       ``ramp``, ``scale`` fitted only with ``scale``, else 1), and
       ``image_aligned = (shifted - a - b*y - c*x) / scale``.

    Shifts are in px, the offset in the images' unit (rad for phases), the ramp in that unit per
    px. Compare ``image_aligned`` and ``reference`` inside ``mask`` only. The mask is in the
    reference's frame and is used for the image as well: fine for shifts of a few px.
    """
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if reference.shape != image.shape or image.ndim != 2:
        raise ValueError(f"align_to needs two 2D images of one shape, got {reference.shape} and {image.shape}")
    mask = _mask_or_all(mask, image.shape)
    if shift is True:
        applied = register_shift(image, reference, upsample, mask)
    elif shift is False:
        applied = (0.0, 0.0)
    else:
        applied = (float(shift[0]), float(shift[1]))
    shifted = _shift_image(image, mask, applied)

    columns, which = _plane_columns(image.shape, offset, ramp)
    coefficients = np.zeros(3)
    gain = 1.0
    if scale:
        fitted = _least_squares(shifted, [reference, *columns], mask)
        gain, coefficients[which] = float(fitted[0]), fitted[1:]
        if gain == 0.0:
            raise ValueError("the fitted scale is 0: the image does not resemble the reference")
    else:
        coefficients[which] = _least_squares(shifted - reference, columns, mask)
    aligned = (shifted - background_image(coefficients, image.shape)) / gain
    return AlignedPair(
        image_aligned=aligned,
        reference=reference,
        mask=mask,
        shift=applied,
        offset=float(coefficients[0]),
        ramp=(float(coefficients[1]), float(coefficients[2])),
        scale=gain,
    )
