"""Images of a state for ``phaser run``: annotated figures (PNG, ...) or raw float32 arrays (TIFF).

A picture format gets one figure per image kind (``phaser.figures``: colour bar with units, scale
bar in A or mrad); ``.tif``/``.tiff`` gets the raw values of each image, as data for later analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from phaser.backend import to_numpy
from phaser.figures import crop_to_scan, save_figure, state_figures
from phaser.state import ReconsState

RAW_EXTENSIONS = ("tif", "tiff")


def _crop_to_scan(image: np.ndarray, state: ReconsState) -> np.ndarray:
    """The part of an object image that the scan covered (plus half a probe)."""
    return crop_to_scan(image, to_numpy(state.positions_A), state.sampling_A, state.probe_shape)


def state_images(state: ReconsState, kinds: tuple[str, ...], crop_roi: bool = True) -> dict[str, np.ndarray]:
    """Real-valued images of ``state`` by name (``object_phase_0``, ``probe_mode_0``, ...).

    Phases in rad, amplitudes as transmission, the probe amplitude in sqrt(e/px) and its
    diffraction-plane amplitude ``sqrt(|FFT(probe)|^2)``. ``scan`` and ``tilt`` have no image here.
    """
    obj = to_numpy(state.object_slices)
    probe = to_numpy(state.probe_modes)
    if crop_roi:
        obj = _crop_to_scan(obj, state)
    images: dict[str, np.ndarray] = {}
    phase = np.angle(obj)
    recip = np.fft.fftshift(np.abs(np.fft.fft2(probe, norm="ortho")) ** 2, axes=(-2, -1))
    for kind in kinds:
        if kind == "object_phase_stack":
            images.update({f"object_phase_{s}": phase[s] for s in range(len(phase))})
        elif kind == "object_phase_sum":
            images["object_phase_sum"] = phase.sum(axis=0)
        elif kind == "object_mag_stack":
            images.update({f"object_mag_{s}": np.abs(obj[s]) for s in range(len(obj))})
        elif kind == "object_mag_sum":
            images["object_mag_sum"] = np.prod(np.abs(obj), axis=0)
        elif kind in ("probe", "probe_mag"):
            images.update({f"probe_mode_{m}": np.abs(probe[m]) for m in range(len(probe))})
        elif kind in ("probe_recip", "probe_recip_mag"):
            images.update({f"probe_recip_mode_{m}": np.sqrt(recip[m]) for m in range(len(probe))})
    return images


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write the raw values of ``image`` as float32 TIFF (data, not a picture); creates the folder."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(image, dtype=np.float32))
    return path


def write_state_images(
    out_dir: Path,
    state: ReconsState,
    kinds: tuple[str, ...],
    name_fmt: str,
    ext: str,
    crop_roi: bool = True,
    dpi: int = 100,
) -> list[Path]:
    """Write the images of ``kinds`` into ``out_dir``; returns the paths.

    ``name_fmt`` takes ``{type}``, ``{iter}`` and ``{ext}``. For TIFF, ``{type}`` is each raw image's
    name (``object_phase_0``); for any other format one figure per kind is written at ``dpi``
    [pixels per inch] and ``{type}`` is the kind (``object_phase_stack``).
    """
    ext = ext.lstrip(".")
    if ext.lower() in RAW_EXTENSIONS:
        return [
            write_image(out_dir / name_fmt.format(type=name, iter=state.iteration, ext=ext), image)
            for name, image in state_images(state, kinds, crop_roi).items()
        ]
    written = []
    for kind, fig in state_figures(state, kinds, crop_roi, dpi).items():
        written.append(save_figure(fig, out_dir / name_fmt.format(type=kind, iter=state.iteration, ext=ext), dpi))
    return written


def image_summary(images: dict[str, Any]) -> str:
    """One line naming the images (for logs)."""
    return ", ".join(sorted(images))
