"""The probe modes in real space and in reciprocal space (the diffraction plane)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from phaser.figures._layout import add_colorbar, as_sampling, new_figure, show_image

PROBE_CMAP = "magma"


def probe_power_fractions(probe_modes: np.ndarray) -> np.ndarray:
    """The share of the total intensity in each mode ``(M,)`` [fraction, sums to 1]."""
    modes = np.asarray(probe_modes).reshape((-1, *np.shape(probe_modes)[-2:]))
    power = np.sum(np.abs(modes) ** 2, axis=(-2, -1))
    total = power.sum()
    return power / total if total > 0 else np.full(len(power), 1.0 / len(power))


def reciprocal_intensity(probe_modes: np.ndarray) -> np.ndarray:
    """``|FFT(probe)|^2`` per mode, zero frequency at the centre [e/px when the probe is in sqrt(e)]."""
    spectrum = np.fft.fft2(np.asarray(probe_modes), norm="ortho")
    return np.fft.fftshift(np.abs(spectrum) ** 2, axes=(-2, -1))


def reciprocal_sampling_mrad(shape: tuple[int, int], sampling_A: tuple[float, float], wavelength_A: float):
    """Angle per reciprocal pixel ``(dy, dx)`` [mrad]: ``wavelength / (N * sampling)`` rad."""
    return tuple(1e3 * wavelength_A / (n * d) for n, d in zip(shape, sampling_A, strict=True))


def probe_modes_figure(
    probe_modes: np.ndarray,
    sampling_A: float | Sequence[float],
    wavelength_A: float,
    dpi: int = 100,
) -> Figure:
    """The probe modes ``(M, N, N)`` (complex, sum ``|probe|^2`` = electrons per pattern).

    Row 1: ``|probe|`` in real space [sqrt(e/px)], with a scale bar in A and each mode's share of
    the intensity [%] in its title. Row 2: the intensity in the diffraction plane [e/px] on a
    square-root scale, with a scale bar in mrad. Each row has one colour scale, so weak modes look weak.
    """
    modes = np.asarray(probe_modes)
    modes = modes.reshape((-1, *modes.shape[-2:]))
    sampling = as_sampling(sampling_A)
    recip_sampling = reciprocal_sampling_mrad(modes.shape[-2:], sampling, wavelength_A)
    fractions = probe_power_fractions(modes)
    amplitude = np.abs(modes)
    recip = reciprocal_intensity(modes)

    n = len(modes)
    fig = new_figure(2, n, dpi, panel_in=3.0 if n > 1 else 3.6, extra_in=1.4)
    axes = fig.subplots(2, n, squeeze=False)
    real_max = float(amplitude.max()) or 1.0
    recip_norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=float(recip.max()) or 1.0)
    for m in range(n):
        real_im = show_image(
            axes[0, m],
            amplitude[m],
            sampling,
            cmap=PROBE_CMAP,
            vmin=0.0,
            vmax=real_max,
            title=f"mode {m + 1}: {100 * fractions[m]:.1f} %",
        )
        recip_im = show_image(
            axes[1, m],
            recip[m],
            recip_sampling,
            cmap=PROBE_CMAP,
            norm=recip_norm,
            unit="mrad",
            title=f"mode {m + 1}, diffraction plane",
        )
    add_colorbar(fig, real_im, list(axes[0]), "|probe| [√(e/px)]")
    add_colorbar(fig, recip_im, list(axes[1]), "intensity [e/px] (√ scale)")
    fig.suptitle(f"probe, {n} mode{'s' if n > 1 else ''}: real space and diffraction plane")
    return fig
