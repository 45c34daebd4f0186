"""PNG (or TIFF) previews of a state: object phase per slice and summed, probe in real and reciprocal space."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from phaser.backend import to_numpy
from phaser.state import ReconsState


def _crop_to_scan(image: np.ndarray, state: ReconsState) -> np.ndarray:
    """The part of an object image that the scan covered (plus half a probe)."""
    positions = np.asarray(state.positions_A) / np.asarray(state.sampling_A)
    half = np.asarray(state.probe_shape) // 4
    lo = np.maximum(np.floor(positions.min(axis=0) - half).astype(int), 0)
    hi = np.minimum(np.ceil(positions.max(axis=0) + half).astype(int) + 1, image.shape[-2:])
    return image[..., lo[0] : hi[0], lo[1] : hi[1]]


def state_images(state: ReconsState, kinds: tuple[str, ...], crop_roi: bool = True) -> dict[str, np.ndarray]:
    """Real-valued images of ``state`` by name (``object_phase_0``, ``probe_mode_0``, ...)."""
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


def write_image(path: Path, image: np.ndarray, dtype: str = "16bit") -> Path:
    """Write ``image`` scaled to its range: PNG through matplotlib, ``.tif`` as raw values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, image.astype(np.float32))
        return path
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    plt.imsave(path, image, cmap="gray")
    return path


def write_state_images(
    out_dir: Path, state: ReconsState, kinds: tuple[str, ...], name_fmt: str, ext: str, crop_roi: bool = True
) -> list[Path]:
    """Write every image of ``kinds`` into ``out_dir``; returns the paths."""
    written = []
    for name, image in state_images(state, kinds, crop_roi).items():
        filename = name_fmt.format(type=name, iter=state.iteration, ext=ext)
        written.append(write_image(out_dir / filename, image))
    return written


def image_summary(images: dict[str, Any]) -> str:
    """One line naming the images (for logs)."""
    return ", ".join(sorted(images))
