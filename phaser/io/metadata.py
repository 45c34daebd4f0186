"""What a data file says about itself, read without reading its patterns.

:func:`read_metadata` gives the shapes and metadata a raw-data hook would produce (plan values
over the file's, as the loader merges them) from file headers only: the ``.npy`` header, HDF5
dataset shapes and attributes, ``.npz`` member headers, EMPAD XML and file sizes. ``phaser
validate`` checks a plan against it, so a file of many gigabytes is checked in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from phaser.io.raw_data import RawDataError

NPY_SIGNATURE = b"\x93NUMPY"


@dataclass(frozen=True)
class DataMetadata:
    """The patterns a raw-data hook would load, described without loading them.

    ``None`` where the file and the plan are both silent.
    """

    source: Path
    """The file the patterns are read from."""
    n_patterns: int
    """Number of scan positions (patterns)."""
    pattern_shape: tuple[int, int]
    """Detector shape (k_y, k_x) in pixels, after ``det_flips``."""
    scan_shape: tuple[int, int] | None
    """Raster scan shape (scan_y, scan_x) in positions."""
    kv: float | None
    """Accelerating voltage [kV]."""
    diff_step_mrad: float | None
    """Detector pixel size [mrad]."""
    scan_step_A: float | None
    """Raster scan step [A]."""
    wavelength_A: float | None = None
    """Electron wavelength [A] set by the raw-data hook (overrides the one from kV)."""


@dataclass(frozen=True)
class NpyHeader:
    """The header of a ``.npy`` array: what :func:`numpy.load` would return, not read."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    """Bytes before the array data."""


def read_npy_header(file: IO[bytes], name: Path | str, available: int | None = None) -> NpyHeader:
    """The header of the ``.npy`` stream ``file`` (at its start); problems name ``name``.

    Refused: a file that is not ``.npy`` (no signature), a damaged header, Python objects (they
    would need unpickling) and, when ``available`` (the stream's size in bytes) is given, array data
    shorter than the header promises.
    """
    if file.read(6) != NPY_SIGNATURE:
        raise RawDataError(f"{name} is not a .npy array file (it does not start with the .npy signature)")
    file.seek(-6, 1)
    try:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(file)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise RawDataError(f"{name} is truncated or damaged: its .npy header cannot be read ({exc})") from None
    if dtype.hasobject:
        raise RawDataError(f"{name} holds Python objects (pickled), not numbers; save a numeric array")
    header = NpyHeader(tuple(int(n) for n in shape), dtype, file.tell())
    if available is not None:
        needed = header.data_offset + math.prod(header.shape) * dtype.itemsize
        if available < needed:
            raise RawDataError(
                f"{name} is truncated or damaged: shape {header.shape} of {dtype} needs {needed} bytes, "
                f"the file has {available}"
            )
    return header


def read_npy_file_header(path: Path, what: str = "raw data file") -> NpyHeader:
    """:func:`read_npy_header` of the file ``path`` (empty and missing files refused by name)."""
    size = check_data_file(path, what)
    with open(path, "rb") as file:
        return read_npy_header(file, path, size)


def check_data_file(path: Path, what: str = "raw data file") -> int:
    """The size [bytes] of ``path``; a missing, non-regular or empty file is refused by name."""
    if not path.is_file():
        raise RawDataError(f"{what} {path} not found" if not path.exists() else f"{what} {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise RawDataError(f"{what} {path} is empty (0 bytes)")
    return size


def pattern_layout(
    shape: tuple[int, ...], dtype: np.dtype, scan_shape: tuple[int, int] | None, path: Path
) -> tuple[int, tuple[int, int], tuple[int, int] | None]:
    """(patterns, detector shape, scan shape) of an array of ``shape`` read as patterns.

    Refuses what every loader refuses: a zero-size array, values that are not real numbers, a rank
    other than 3 or 4, and a ``scan_shape`` whose positions are not the file's pattern count.
    """
    if dtype.kind not in "biuf":  # bool, signed, unsigned, float
        raise RawDataError(f"{path}: patterns must be real numbers, got dtype {dtype}")
    if math.prod(shape) == 0:
        raise RawDataError(f"{path}: the pattern array is empty (shape {tuple(shape)})")
    if len(shape) not in (3, 4):
        raise RawDataError(
            f"{path}: expected patterns (n, k_y, k_x) or (scan_y, scan_x, k_y, k_x), got shape {tuple(shape)}"
        )
    n_patterns = math.prod(shape[:-2])
    if scan_shape is not None and math.prod(scan_shape) != n_patterns:
        raise RawDataError(
            f"{path}: scan_shape {tuple(scan_shape)} has {math.prod(scan_shape)} positions but the file "
            f"holds {n_patterns} patterns (shape {tuple(shape)})"
        )
    if scan_shape is None and len(shape) == 4:
        scan_shape = (int(shape[0]), int(shape[1]))
    return n_patterns, (int(shape[-2]), int(shape[-1])), scan_shape


def read_metadata(raw_data_hook: Any) -> DataMetadata | None:
    """What the plan's raw-data hook would load, from the file's headers; None for a custom hook.

    Raises :class:`RawDataError` (naming the file) for what the loader would refuse: a missing,
    empty, truncated or non-array file, pickled objects, a wrong rank, a scan shape that
    disagrees with the file.
    """
    if raw_data_hook.name == "manual":
        from phaser.io.manual import read_manual_metadata

        return read_manual_metadata(raw_data_hook.props)
    if raw_data_hook.name == "empad":
        from phaser.io.empad import read_empad_metadata

        return read_empad_metadata(raw_data_hook.props)
    return None
