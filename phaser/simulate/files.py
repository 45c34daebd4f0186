"""HDF5 files of simulated datasets: patterns as a raw-data loader reads them, plus the truth.

Layout (names fixed: the HDF5 raw-data loader reads ``patterns`` and its attributes)::

    patterns              float32 (scan_y, scan_x, k_y, k_x) [electrons], centred
        attrs: kv [kV], diff_step_mrad [mrad/px], scan_step_A [A], scan_shape, centred=True
    truth/object          complex64 (S, Ny, Nx) transmission
    truth/probe           complex64 (M, N, N) real-space probe modes
    truth/positions_A     float64 (n, 2) true positions (y, x) [A] in the object frame
    truth/nominal_positions_A  float64 (n, 2) raster positions [A], no jitter
        attrs of truth: sampling_A [A], slice_thickness_A [A], wavelength_A [A],
        conv_angle_mrad [mrad], defocus_A [A, C10], dose_per_pattern [e] (nan when noiseless),
        scan_rotation_deg [deg]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phaser.simulate.dataset import SimulatedDataset


def write_dataset(ds: SimulatedDataset, path: str | Path) -> Path:
    """Write ``ds`` to the HDF5 file ``path`` (overwritten, folders created), returning the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        patterns = f.create_dataset("patterns", data=ds.patterns.astype(np.float32))
        patterns.attrs["kv"] = ds.kv
        patterns.attrs["diff_step_mrad"] = ds.diff_step_mrad
        patterns.attrs["scan_step_A"] = ds.scan_step_A
        patterns.attrs["scan_shape"] = np.asarray(ds.scan_shape, dtype=np.int64)
        patterns.attrs["centred"] = True
        truth = f.create_group("truth")
        truth.create_dataset("object", data=ds.object.astype(np.complex64))
        truth.create_dataset("probe", data=ds.probe_modes.astype(np.complex64))
        truth.create_dataset("positions_A", data=ds.positions_A)
        truth.create_dataset("nominal_positions_A", data=ds.nominal_positions_A)
        truth.attrs["sampling_A"] = np.asarray(ds.sampling_A, dtype=np.float64)
        truth.attrs["slice_thickness_A"] = ds.slice_thickness_A
        truth.attrs["wavelength_A"] = ds.wavelength_A
        truth.attrs["conv_angle_mrad"] = ds.conv_angle_mrad
        truth.attrs["defocus_A"] = ds.defocus_A
        dose = ds.dose_per_pattern
        truth.attrs["dose_per_pattern"] = math.nan if dose is None else dose
        truth.attrs["scan_rotation_deg"] = ds.scan_rotation_deg
    return path


def read_truth(path: str | Path) -> dict[str, Any]:
    """The ``truth`` group of a file from :func:`write_dataset` as a dict.

    Keys: ``object``, ``probe``, ``positions_A``, ``nominal_positions_A`` (arrays) and the group's
    attributes (``sampling_A`` as a ``(dy, dx)`` tuple, the rest as floats;
    ``dose_per_pattern`` is nan for noiseless data).
    """
    with h5py.File(Path(path), "r") as f:
        truth = f["truth"]
        out: dict[str, Any] = {name: truth[name][()] for name in truth}
        for key, value in truth.attrs.items():
            out[key] = tuple(float(v) for v in value) if np.ndim(value) else float(value)
    return out
