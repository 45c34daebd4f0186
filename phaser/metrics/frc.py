"""Fourier ring correlation (FRC) of two images and its resolution thresholds.

The FRC of ring ``k`` is ``Re sum F_a F_b^* / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the Fourier
pixels of that ring (Saxton & Baumeister 1982; van Heel 1987). It is 1 for identical images and
drops towards 0 where the two images share no signal. Blurring one image with an isotropic
filter leaves it unchanged (a ring's filter gain cancels): the FRC measures shared signal against
noise, not sharpness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import windows

from phaser.physics.grids import fft_frequencies


@dataclass(frozen=True)
class FRCResult:
    """An FRC curve.

    Attributes
    ----------
    frequencies
        Ring centres ``(R,)``: 1/A when the FRC was given ``sampling_A``, else cycles/px; ring 0 is
        the zero frequency and the last ring the Nyquist frequency of the coarser axis.
    curve
        The FRC of each ring ``(R,)`` (unitless, in [-1, 1]; nan for an empty ring).
    n_pixels_per_ring
        Fourier pixels in each ring ``(R,)`` (both halves of the Hermitian spectrum counted).
    sampling_A
        The pixel size ``(dy, dx)`` [A] the frequencies refer to, or ``None`` (pixel units).
    """

    frequencies: np.ndarray
    curve: np.ndarray
    n_pixels_per_ring: np.ndarray
    sampling_A: tuple[float, float] | None = None

    @property
    def frequency_unit(self) -> str:
        return "1/A" if self.sampling_A is not None else "1/px"


@dataclass(frozen=True)
class FRCResolution:
    """Where an FRC curve first falls below a threshold.

    Attributes
    ----------
    frequency
        The crossing frequency (linearly interpolated between rings), in the unit of the
        :class:`FRCResult`; the Nyquist frequency when the curve never crosses; 0 when it never
        reaches the threshold (no shared signal: ``resolution`` is then inf).
    resolution
        ``1 / frequency``: A when the FRC had a sampling, else px. Lower is better.
    crossed
        False when the curve stays above the threshold up to Nyquist (``resolution`` is then only
        a bound set by the pixel size).
    threshold
        The threshold's name or value.
    """

    frequency: float
    resolution: float
    crossed: bool
    threshold: str | float


def half_bit_threshold(n_pixels: Any) -> np.ndarray:
    """The half-bit information threshold of van Heel & Schatz (2005) for rings of ``n_pixels``.

    ``T(n) = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))``: 1 for a one-pixel ring,
    falling towards ``0.2071 / 1.2071 = 0.1716`` for large rings. Unitless.
    """
    inv_sqrt_n = 1.0 / np.sqrt(np.maximum(np.asarray(n_pixels, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 * inv_sqrt_n) / (1.2071 + 0.9102 * inv_sqrt_n)


def apodisation_window(shape: tuple[int, int], window: str | None = "tukey", tukey_alpha: float = 0.5) -> np.ndarray:
    """Separable 2D window: ``"hann"``, ``"tukey"`` (cosine edges over ``tukey_alpha`` of each
    axis) or ``None`` (all ones). It tapers the edges so they do not leak into every ring."""
    if window is None:
        return np.ones(shape)
    if window == "hann":
        wy, wx = windows.hann(shape[0]), windows.hann(shape[1])
    elif window == "tukey":
        wy, wx = windows.tukey(shape[0], tukey_alpha), windows.tukey(shape[1], tukey_alpha)
    else:
        raise ValueError(f"unknown window {window!r}: use 'hann', 'tukey' or None")
    return wy[:, None] * wx[None, :]


def _without_plane(image: np.ndarray) -> np.ndarray:
    """``image`` minus its least-squares plane ``a + b*y + c*x`` (complex images too)."""
    y, x = np.indices(image.shape, dtype=np.float64)
    design = np.stack([np.ones(image.size), y.ravel(), x.ravel()], axis=1)
    coefficients = np.linalg.lstsq(design, image.ravel(), rcond=None)[0]
    return image - (design @ coefficients).reshape(image.shape)


def frc(
    a: Any,
    b: Any,
    n_bins: int | None = None,
    sampling_A: tuple[float, float] | None = None,
    window: str | None = "tukey",
    tukey_alpha: float = 0.5,
    detrend: bool = False,
) -> FRCResult:
    """The FRC of images ``a`` and ``b`` (same shape, real or complex).

    Each image has its mean (with ``detrend``, its best plane ``a + b*y + c*x``: phase ramps, which
    ptychography leaves undetermined, otherwise dominate the weak lowest rings) removed and is
    multiplied by :func:`apodisation_window`. Rings are
    ``n_bins`` equal steps from 0 to the Nyquist frequency of the coarser axis (default
    ``min(Ny, Nx) // 2 + 1`` rings, one Fourier pixel wide); corners beyond Nyquist are unused.

    Higher is better (1 everywhere for identical images). Frequencies in 1/A with ``sampling_A``
    ``(dy, dx)`` [A], else cycles/px. Alignment: none; a shift between the images lowers the FRC
    (a shift of ``d`` px makes ring ``f`` [1/px] oscillate as ``cos(2 pi f d)``), so align first.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"frc needs two 2D images of one shape, got {a.shape} and {b.shape}")
    sampling = (1.0, 1.0) if sampling_A is None else (float(sampling_A[0]), float(sampling_A[1]))
    n_rings = n_bins if n_bins is not None else min(a.shape) // 2 + 1
    if n_rings < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_rings}")

    taper = apodisation_window(a.shape, window, tukey_alpha)
    a = _without_plane(a) if detrend else a - a.mean()
    b = _without_plane(b) if detrend else b - b.mean()
    spectrum_a, spectrum_b = np.fft.fft2(a * taper), np.fft.fft2(b * taper)

    ky, kx = fft_frequencies(np, a.shape, sampling, np.float64)
    radius = np.sqrt(ky**2 + kx**2)
    k_nyquist = min(0.5 / sampling[0], 0.5 / sampling[1])
    step = k_nyquist / (n_rings - 1)
    ring = np.rint(radius / step).astype(np.int64).ravel()
    inside = ring < n_rings
    ring = ring[inside]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring, weights=values.ravel()[inside], minlength=n_rings)

    cross = ring_sum(np.real(spectrum_a * np.conj(spectrum_b)))
    power = ring_sum(np.abs(spectrum_a) ** 2) * ring_sum(np.abs(spectrum_b) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(power > 0, cross / np.sqrt(power), np.nan)
    return FRCResult(
        frequencies=np.arange(n_rings) * step,
        curve=curve,
        n_pixels_per_ring=np.bincount(ring, minlength=n_rings),
        sampling_A=None if sampling_A is None else sampling,
    )


def threshold_curve(result: FRCResult, threshold: str | float = "1/7") -> np.ndarray:
    """The threshold per ring: ``"1/7"`` (0.1429), ``"half-bit"`` (:func:`half_bit_threshold`)
    or a constant ``float``."""
    if isinstance(threshold, str):
        if threshold == "1/7":
            return np.full(result.curve.shape, 1.0 / 7.0)
        if threshold in ("half-bit", "half_bit", "1/2-bit"):
            return half_bit_threshold(result.n_pixels_per_ring)
        raise ValueError(f"unknown FRC threshold {threshold!r}: use '1/7', 'half-bit' or a number")
    return np.full(result.curve.shape, float(threshold))


def _first_ring_above(above: np.ndarray) -> int | None:
    """Index of the first ring above zero frequency whose curve reaches the threshold, or None."""
    hits = np.flatnonzero(above[1:]) + 1
    return int(hits[0]) if hits.size else None


def _first_sustained_drop(above: np.ndarray, start: int, min_rings_below: int) -> int | None:
    """First ring after ``start`` that is below the threshold while the ring before it is above,
    and stays below for ``min_rings_below`` rings (or up to the last ring); None when none."""
    for i in range(start + 1, above.size):
        if above[i - 1] and not np.any(above[i : i + min_rings_below]):
            return i
    return None


def frc_resolution(result: FRCResult, threshold: str | float = "1/7", min_rings_below: int = 1) -> FRCResolution:
    """Where ``result.curve`` falls below ``threshold``, searching from its first ring above it.

    The crossing is interpolated linearly between the last ring above and the first ring below;
    with ``min_rings_below > 1`` a drop counts only when that many rings in a row (or all the rings
    left) stay below. Lower ``resolution`` is better: A when the FRC had a sampling, else px.
    A curve below the threshold in every ring gives ``frequency = 0``, ``resolution = inf``.
    Alignment: as for :func:`frc`.
    """
    margin = result.curve - threshold_curve(result, threshold)
    above = margin >= 0  # nan (empty ring) counts as below
    # Rings before the curve first reaches the threshold are skipped (ring 0, the mean, always):
    # the lowest rings of a small box hold few pixels (half-bit threshold ~0.58 at ring 1), the
    # plane removal and the window empty them, and a crystal has no signal below its first Bragg
    # ring, so there the FRC measures the reconstruction's undetermined low-frequency background,
    # not its resolution. Searching from ring 1 reported the box size (11.8 A) as the half-bit
    # resolution of a reconstruction whose 1/7 curve held to 0.9 A.
    first_above = _first_ring_above(above)
    if first_above is None:
        return FRCResolution(frequency=0.0, resolution=math.inf, crossed=True, threshold=threshold)
    i = _first_sustained_drop(above, first_above, max(1, int(min_rings_below)))
    if i is None:
        frequency, crossed = float(result.frequencies[-1]), False
    else:
        frequency, crossed = float(result.frequencies[i]), True
        if np.isfinite(margin[i]):
            before, after = margin[i - 1], margin[i]
            t = before / (before - after)
            frequency = float(result.frequencies[i - 1] + t * (result.frequencies[i] - result.frequencies[i - 1]))
    resolution = 1.0 / frequency if frequency > 0 else math.inf
    return FRCResolution(frequency=frequency, resolution=resolution, crossed=crossed, threshold=threshold)
