"""The study's ground truth, read once per worker and put in the form the metrics take.

Three sources: a file written by ``phaser simulate`` (its ``truth`` group: the projected
potential per slice for a specimen, else the object's transmission, with the true positions
that place it in the reconstruction's frame), a specimen YAML (its potential computed on a fine
grid and Fourier-cropped to the reconstruction's pixel size, so it is band-limited as the
reconstruction is), or a projected potential [V*A] in a ``.npy``/``.npz`` file with its pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phaser.metrics import frame_offset_px, potential_to_phase


class TruthError(ValueError):
    """A truth that cannot be read; the message names the file and the field."""


@dataclass
class Truth:
    """A projected potential [V*A] or a transmission, per slice, with its pixel size [A]."""

    source: str
    sampling_A: tuple[float, float] | None
    potential_VA: np.ndarray | None = None  # (S, Ny, Nx)
    transmission: np.ndarray | None = None  # (S, Ny, Nx) complex
    positions_A: np.ndarray | None = None  # true positions, to place the truth in the recon frame
    specimen: Path | None = None
    slice_thickness_A: float | None = None
    _by_sampling: dict[tuple[float, float], np.ndarray] = field(default_factory=dict)

    def phase(self, kv: float, sampling_A: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
        """The truth's phase per slice [rad] for electrons of ``kv`` and its pixel size [A]."""
        if self.specimen is not None:
            key = (round(sampling_A[0], 9), round(sampling_A[1], 9))
            if key not in self._by_sampling:
                from phaser.simulate.truth import specimen_truth

                potential, _ = specimen_truth(self.specimen, tuple(sampling_A), self.slice_thickness_A)
                self._by_sampling[key] = np.asarray(potential)
            return potential_to_phase(self._by_sampling[key], kv), tuple(sampling_A)
        if self.potential_VA is not None:
            return potential_to_phase(self.potential_VA, kv), self.sampling_A  # type: ignore[return-value]
        return self.transmission, self.sampling_A  # type: ignore[return-value]

    def offset_px(self, positions_A: Any, sampling_A: tuple[float, float]) -> tuple[float, float]:
        """Where the truth's origin lies in the reconstruction frame [px] (0 when unknown: the
        registration then finds the shift alone)."""
        if self.positions_A is None or len(self.positions_A) != len(positions_A):
            return (0.0, 0.0)
        offset = frame_offset_px(np.asarray(positions_A), self.positions_A, sampling_A)
        return (float(offset[0]), float(offset[1]))


def load_truth(truth_spec: Any, resolve: Any) -> Truth:
    """Read the truth described by a study's ``truth:`` entry (paths through ``resolve``)."""
    if truth_spec.file is not None:
        return _from_simulated_file(resolve(truth_spec.file))
    if truth_spec.specimen is not None:
        path = resolve(truth_spec.specimen)
        if not path.is_file():
            raise TruthError(f"truth.specimen: file not found: {path}")
        return Truth(str(path), None, specimen=path, slice_thickness_A=truth_spec.slice_thickness_A)
    return _from_array_file(resolve(truth_spec.potential), truth_spec.key, tuple(truth_spec.sampling_A))


def _from_simulated_file(path: Path) -> Truth:
    import h5py

    if not path.is_file():
        raise TruthError(f"truth.file: file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "truth" not in f:
                raise TruthError(f"truth.file: {path} holds no `truth` group (write it with `phaser simulate`)")
            group = f["truth"]
            positions = group["positions_A"][()] if "positions_A" in group else None
            if "potential_VA" in group:
                dataset = group["potential_VA"]
                sampling = tuple(float(v) for v in dataset.attrs["sampling_A"])
                return Truth(str(path), sampling, potential_VA=dataset[()], positions_A=positions)  # type: ignore[arg-type]
            sampling = tuple(float(v) for v in group.attrs["sampling_A"])
            return Truth(str(path), sampling, transmission=group["object"][()], positions_A=positions)  # type: ignore[arg-type]
    except (OSError, KeyError) as exc:
        raise TruthError(f"truth.file: cannot read the truth of {path} ({exc})") from None


def _from_array_file(path: Path, key: str | None, sampling_A: tuple[float, float]) -> Truth:
    if not path.is_file():
        raise TruthError(f"truth.potential: file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TruthError(f"truth.potential: {path} is not a NumPy array file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if key is None and len(names) != 1:
            raise TruthError(f"truth.key: {path} holds {', '.join(names)}: name the potential's array")
        name = key or names[0]
        if name not in names:
            raise TruthError(f"truth.key: {name!r} is not in {path} (it holds {', '.join(names)})")
        loaded = loaded[name]
    array = np.asarray(loaded)
    if array.ndim not in (2, 3) or array.size == 0 or not np.isrealobj(array):
        raise TruthError(
            f"truth.potential: {path} must hold a real (Ny, Nx) or (S, Ny, Nx) array [V*A], "
            f"got {array.dtype} {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise TruthError(f"truth.potential: {path} holds NaN or infinite values")
    return Truth(str(path), sampling_A, potential_VA=array.reshape(-1, *array.shape[-2:]).astype(np.float64))
