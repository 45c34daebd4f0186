"""The figures of a reconstruction state, by the plan's image kinds (``ImageType`` in the plan schema)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from phaser.backend import to_numpy
from phaser.figures._layout import AMPLITUDE_CMAP
from phaser.figures._object import image_figure, object_phase_figure, slice_montage_figure
from phaser.figures._probe import probe_modes_figure
from phaser.figures._scan import scan_figure, tilt_figure

AMPLITUDE_LABEL = "amplitude |T| [transmission]"
STATE_FIGURE_KINDS = (
    "probe",
    "probe_mag",
    "probe_recip",
    "probe_recip_mag",
    "object_phase_stack",
    "object_phase_sum",
    "object_mag_stack",
    "object_mag_sum",
    "scan",
    "tilt",
)


def crop_to_scan(
    image: np.ndarray, positions_A: Any, sampling_A: Sequence[float], probe_shape: tuple[int, int]
) -> np.ndarray:
    """The part of an object image ``(..., Ny, Nx)`` that the scan at ``positions_A`` [A] covered, plus half a probe.

    ``sampling_A`` is the object pixel size [A], ``probe_shape`` the probe size [px].
    """
    positions = np.asarray(positions_A) / np.asarray(sampling_A)
    half = np.asarray(probe_shape) // 4
    lo = np.maximum(np.floor(positions.min(axis=0) - half).astype(int), 0)
    hi = np.minimum(np.ceil(positions.max(axis=0) + half).astype(int) + 1, image.shape[-2:])
    return image[..., lo[0] : hi[0], lo[1] : hi[1]]


def state_figures(state: Any, kinds: Iterable[str], crop_roi: bool = True, dpi: int = 100) -> dict[str, Figure]:
    """One figure per image kind of ``state`` (a :class:`phaser.state.ReconsState`), by kind.

    ``object_*`` figures show the region the scan covered when ``crop_roi``; all ``probe*`` kinds
    give the probe figure (real and reciprocal space); unknown kinds raise ``ValueError``.
    """
    obj = to_numpy(state.object_slices)
    if crop_roi:
        obj = crop_to_scan(obj, to_numpy(state.positions_A), state.sampling_A, state.probe_shape)
    sampling = state.sampling_A
    thicknesses = np.asarray(state.slice_thicknesses_A).tolist()
    positions = to_numpy(state.positions_A)
    builders: dict[str, Callable[[], Figure]] = {
        "object_phase_stack": lambda: slice_montage_figure(obj, sampling, thicknesses, dpi),
        "object_phase_sum": lambda: object_phase_figure(np.angle(obj).sum(axis=0), sampling, dpi=dpi),
        "object_mag_stack": lambda: slice_montage_figure(
            np.abs(obj),
            sampling,
            thicknesses,
            dpi,
            colorbar_label=AMPLITUDE_LABEL,
            cmap=AMPLITUDE_CMAP,
            title="object amplitude per slice",
        ),
        "object_mag_sum": lambda: image_figure(
            np.prod(np.abs(obj), axis=0),
            sampling,
            "object amplitude (product over slices)",
            AMPLITUDE_LABEL,
            AMPLITUDE_CMAP,
            dpi=dpi,
        ),
        "scan": lambda: scan_figure(positions, state.initial_positions_A, dpi),
        "tilt": lambda: tilt_figure(positions, to_numpy(state.tilt_mrad), dpi),
    }

    def probe() -> Figure:
        return probe_modes_figure(to_numpy(state.probe_modes), sampling, state.wavelength_A, dpi)

    builders.update({kind: probe for kind in ("probe", "probe_mag", "probe_recip", "probe_recip_mag")})
    figures: dict[str, Figure] = {}
    for kind in kinds:
        if kind not in builders:
            raise ValueError(f"unknown image kind {kind!r}; known: {', '.join(STATE_FIGURE_KINDS)}")
        if kind not in figures:
            figures[kind] = builders[kind]()
    return figures
