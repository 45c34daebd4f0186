"""Depth resolution: a Gaussian fitted to a point-like feature's profile along z."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import curve_fit

# FWHM of a Gaussian in units of its standard deviation: 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


class DepthFit(NamedTuple):
    """A Gaussian ``background + amplitude * exp(-(z - z0)^2 / (2 sigma^2))`` fitted to a profile.

    ``z0`` and ``fwhm`` are in the unit of the profile's z (A); ``amplitude`` and ``background``
    in the unit of its values (e.g. rad per slice). A lower ``fwhm`` is a better depth resolution.
    """

    z0: float
    fwhm: float
    amplitude: float
    background: float


def gaussian_profile(z: Any, z0: float, fwhm: float, amplitude: float, background: float) -> Any:
    """The model of :class:`DepthFit` evaluated at ``z``."""
    sigma = fwhm / FWHM_PER_SIGMA
    return background + amplitude * np.exp(-((np.asarray(z) - z0) ** 2) / (2.0 * sigma**2))


def depth_profile_fit(profile_z: Any, values: Any, p0: tuple[float, ...] | None = None) -> DepthFit:
    """Gaussian fitted by least squares (:func:`scipy.optimize.curve_fit`) to a depth profile.

    For a point-like feature (an atom) followed through the slices of a reconstruction: ``values``
    its phase (or potential) per slice at slice depths ``profile_z`` [A]. The start is the
    extremum farthest from the median (a peak or a dip), the median as background and the width
    at half that extremum; ``p0 = (z0, fwhm, amplitude, background)`` overrides it. Returns
    :class:`DepthFit` (``fwhm`` positive); raises ``RuntimeError`` if the fit does not converge.
    """
    z = np.asarray(profile_z, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if z.shape != v.shape or z.size < 4:
        raise ValueError(f"need matching profile_z and values of at least 4 points, got {z.size}, {v.size}")
    if p0 is None:
        background = float(np.median(v))
        peak = int(np.argmax(np.abs(v - background)))
        amplitude = float(v[peak] - background)
        above_half = np.abs(v - background) >= 0.5 * abs(amplitude)
        width = float(np.ptp(z[above_half])) or float(np.ptp(z)) / 10.0
        p0 = (float(z[peak]), max(width, float(np.min(np.diff(np.sort(z))))), amplitude, background)
    params, _ = curve_fit(gaussian_profile, z, v, p0=p0, maxfev=10000)
    z0, fwhm, amplitude, background = (float(p) for p in params)
    return DepthFit(z0=z0, fwhm=abs(fwhm), amplitude=amplitude, background=background)
