"""The ``manual`` raw-data hook: 4D-STEM patterns from .npy, .npz, HDF5 or raw binary files.

Also holds the two steps every loader ends with, :func:`apply_det_flips` and
:func:`to_electron_counts`, so that the EMPAD loader treats its pixels the same way.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from phaser.hooks import HookProps
from phaser.io.metadata import DataMetadata, check_data_file, pattern_layout, read_npy_file_header, read_npy_header
from phaser.io.raw_data import RawData, RawDataError

logger = logging.getLogger(__name__)

PATTERN_NAMES = ("patterns", "data")
"""Dataset (HDF5) or array (.npz) names tried, in order, when the plan gives no ``key``."""

METADATA_NAMES = ("kv", "diff_step_mrad", "diff_step", "scan_step_A", "scan_shape", "centred")
"""HDF5 attributes or .npz 0-d arrays read as metadata."""


class ManualProps(HookProps):
    """Parameters of :func:`load_manual`; a value given here overrides the file's metadata."""

    path: Path
    """Data file; its suffix picks the format (.npy, .npz, .h5/.hdf5, anything else raw binary)."""
    diff_step: PositiveFloat | None = None
    """Reciprocal-space size of a detector pixel (mrad per pixel)."""
    kv: PositiveFloat | None = None
    """Accelerating voltage (kV)."""
    wavelength: PositiveFloat | None = None
    """Electron wavelength (A); overrides the one computed from kV."""
    adu: PositiveFloat | None = None
    """Detector counts per electron (counts/e-); patterns are divided by it."""
    det_shape: tuple[PositiveInt, PositiveInt] | None = None
    """Detector shape (k_y, k_x) in pixels after ``det_flips``; required for raw binary."""
    dtype: str | None = None
    """Raw binary pixel type as a numpy dtype string, e.g. '<f4' or 'uint16'; required there."""
    offset: NonNegativeInt = 0
    """Raw binary: bytes skipped at the start of the file (header)."""
    gap: NonNegativeInt = 0
    """Raw binary: bytes after each frame (per-frame footer)."""
    key: str | None = None
    """HDF5 dataset path or .npz array name of the patterns; auto-detected when None."""
    fftshifted: bool = False
    """True when the zero frequency is at pixel (0, 0) in the file; it is shifted to the centre."""
    det_flips: tuple[bool, bool, bool] | None = None
    """(flip k_y, flip k_x, transpose) of the detector axes, flips first, as stored in the file."""
    scan_shape: tuple[PositiveInt, PositiveInt] | None = None
    """Raster scan shape (scan_y, scan_x) in positions; needed to reshape (n, k_y, k_x) data."""
    scan_step: PositiveFloat | None = None
    """Raster scan step (A)."""


class _Metadata(NamedTuple):
    """Metadata after merging the plan over the file."""

    kv: float | None
    diff_step_mrad: float | None
    scan_step_A: float | None
    scan_shape: tuple[int, int] | None
    centred: bool


def load_manual(props: ManualProps) -> RawData:
    """Load ``props.path`` as float32 patterns in electrons, zero frequency at the centre.

    Plan values override metadata stored in the file (HDF5 attributes, .npz 0-d arrays); when the
    plan does not set ``fftshifted``, a file attribute ``centred = False`` means fftshifted.
    """
    path = Path(props.path).expanduser()
    check_data_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        patterns, file_meta = _read_npy(path), {}
    elif suffix == ".npz":
        patterns, file_meta = _read_npz(path, props.key)
    elif suffix in (".h5", ".hdf5"):
        patterns, file_meta = _read_hdf5(path, props.key)
    else:
        patterns, file_meta = _read_raw_binary(path, props), {}
    meta = _merge_metadata(file_meta, props, path)
    patterns = _reshape_to_scan(patterns, meta.scan_shape, path)
    counts = apply_det_flips(to_electron_counts(patterns, props.adu, path), props.det_flips)
    if props.det_shape is not None and counts.shape[-2:] != tuple(props.det_shape):
        raise RawDataError(f"{path}: detector shape {counts.shape[-2:]} differs from det_shape {props.det_shape}")
    if not meta.centred:
        counts = np.fft.fftshift(counts, axes=(-2, -1))
    return RawData(
        patterns=np.ascontiguousarray(counts),
        kv=meta.kv,
        diff_step_mrad=meta.diff_step_mrad,
        scan_shape=tuple(counts.shape[:2]) if counts.ndim == 4 else None,
        scan_step_A=meta.scan_step_A,
        source=path,
        extra={
            "loader": "manual",
            "format": suffix.lstrip(".") or "raw",
            **({"wavelength_A": props.wavelength} if props.wavelength is not None else {}),
        },
    )


def read_manual_metadata(props: ManualProps) -> DataMetadata:
    """What :func:`load_manual` would load, from the file's header only (see :mod:`phaser.io.metadata`)."""
    path = Path(props.path).expanduser()
    check_data_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        header = read_npy_file_header(path)
        shape, dtype, file_meta = header.shape, header.dtype, {}
    elif suffix == ".npz":
        shape, dtype, file_meta = _npz_header(path, props.key)
    elif suffix in (".h5", ".hdf5"):
        shape, dtype, file_meta = _hdf5_header(path, props.key)
    else:
        frames = _read_raw_binary(path, props)  # a memory map: nothing read yet
        shape, dtype, file_meta = frames.shape, frames.dtype, {}
    meta = _merge_metadata(file_meta, props, path)
    n_patterns, detector, scan_shape = pattern_layout(shape, dtype, meta.scan_shape, path)
    if props.det_flips is not None and props.det_flips[2]:
        detector = (detector[1], detector[0])
    if props.det_shape is not None and detector != tuple(props.det_shape):
        raise RawDataError(f"{path}: detector shape {detector} differs from det_shape {tuple(props.det_shape)}")
    return DataMetadata(
        source=path,
        n_patterns=n_patterns,
        pattern_shape=detector,
        scan_shape=scan_shape,
        kv=meta.kv,
        diff_step_mrad=meta.diff_step_mrad,
        scan_step_A=meta.scan_step_A,
        wavelength_A=props.wavelength,
    )


def apply_det_flips(patterns: np.ndarray, flips: tuple[bool, bool, bool] | None) -> np.ndarray:
    """Flip k_y, flip k_x, then transpose the detector axes (the last two), as ``flips`` says."""
    if flips is None:
        return patterns
    flip_y, flip_x, transpose = flips
    if flip_y:
        patterns = np.flip(patterns, axis=-2)
    if flip_x:
        patterns = np.flip(patterns, axis=-1)
    if transpose:
        patterns = np.swapaxes(patterns, -2, -1)
    return patterns


def to_electron_counts(patterns: np.ndarray, adu: float | None, source: Path) -> np.ndarray:
    """A float32 copy of ``patterns`` divided by ``adu`` (counts per electron).

    NaN or infinite pixels raise :class:`RawDataError`; negative pixels are clipped to 0 with a
    warning that says how many.
    """
    if patterns.dtype.kind not in "biuf":  # bool, signed, unsigned, float
        raise RawDataError(f"{source}: patterns must be real numbers, got dtype {patterns.dtype}")
    counts = np.array(patterns, dtype=np.float32)
    n_not_finite = counts.size - np.count_nonzero(np.isfinite(counts))
    if n_not_finite:
        raise RawDataError(
            f"{source}: {n_not_finite} of {counts.size} pixels are NaN or infinite; replace them in the "
            f"file (e.g. with 0, like a dead pixel) or crop them away"
        )
    n_negative = np.count_nonzero(counts < 0)
    if n_negative:
        logger.warning("%s: clipped %d negative pixels to 0", source, n_negative)
        np.maximum(counts, 0, out=counts)
    if adu is not None:
        counts /= np.float32(adu)
    return counts


def _read_npy(path: Path) -> np.ndarray:
    """The array in a .npy file, memory-mapped; never unpickles. Problems name the file."""
    read_npy_file_header(path)  # not .npy, pickled, truncated: refused with the file's name
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RawDataError(f"{path} is truncated or damaged: {exc}") from None


def _reshape_to_scan(patterns: np.ndarray, scan_shape: tuple[int, int] | None, path: Path) -> np.ndarray:
    """(scan_y, scan_x, k_y, k_x) when a scan shape is known or stored, else (n, k_y, k_x)."""
    n_patterns, _, _ = pattern_layout(patterns.shape, patterns.dtype, scan_shape, path)
    if scan_shape is None:
        if patterns.ndim == 3:
            logger.info("%s: no scan_shape, keeping %d patterns unordered", path, n_patterns)
        return patterns
    return patterns.reshape(*scan_shape, *patterns.shape[-2:])


def _read_npz(path: Path, key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The pattern array of an .npz archive and its metadata arrays."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RawDataError(f"{path} is not a readable .npz archive: {exc}") from None
    with archive:
        names = list(archive.files)
        name = _npz_pattern_name(path, names, key)
        try:
            meta = {m: archive[m] for m in METADATA_NAMES if m in names and m != name}
            return archive[name], meta
        except ValueError as exc:
            if "pickle" in str(exc):
                raise RawDataError(f"{path}: array {name!r} holds Python objects (pickled), not numbers") from None
            raise RawDataError(f"{path}: array {name!r} is damaged: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise RawDataError(f"{path}: array {name!r} is truncated or damaged: {exc}") from None


def _npz_pattern_name(path: Path, names: list[str], key: str | None) -> str:
    """``key``, else ``patterns`` or ``data``, else the only array that is not metadata."""
    if key is not None and key not in names:
        raise RawDataError(f"{path}: no array named {key!r}; arrays: {names}")
    name = key or next((n for n in PATTERN_NAMES if n in names), None)
    if name is None:
        candidates = [n for n in names if n not in METADATA_NAMES]
        if len(candidates) != 1:
            raise RawDataError(f"{path}: cannot tell which array holds the patterns among {candidates}; set `key`")
        name = candidates[0]
    return name


def _read_hdf5(path: Path, key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The pattern dataset of an HDF5 file and the attributes of the file root and dataset."""
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise RawDataError(f"{path}: cannot open as HDF5 ({exc})") from exc
    with file:
        dataset = _hdf5_pattern_dataset(file, path, key)
        # dataset attributes win over file-root attributes
        meta = {**dict(file.attrs), **dict(dataset.attrs)}
        try:
            return dataset[()], meta
        except (OSError, ValueError, TypeError) as exc:
            raise RawDataError(
                f"{path}: dataset {dataset.name!r} cannot be read (truncated or damaged?): {exc}"
            ) from None


def _npz_header(path: Path, key: str | None) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
    """Shape and dtype of the pattern array of an .npz archive (its header only) and its metadata."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise RawDataError(f"{path} is not a readable .npz archive: {exc}") from None
    with archive:
        members = {n[: -len(".npy")]: n for n in archive.namelist() if n.endswith(".npy")}
        name = _npz_pattern_name(path, list(members), key)
        try:
            with archive.open(members[name]) as member:
                header = read_npy_header(member, f"{path}: array {name!r}", archive.getinfo(members[name]).file_size)
            meta = {}
            for m in METADATA_NAMES:
                if m in members and m != name:
                    with archive.open(members[m]) as member:
                        meta[m] = np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise RawDataError(f"{path}: is truncated or damaged: {exc}") from None
    return header.shape, header.dtype, meta


def _hdf5_header(path: Path, key: str | None) -> tuple[tuple[int, ...], np.dtype, dict[str, Any]]:
    """Shape and dtype of the pattern dataset of an HDF5 file and its attributes (no data read)."""
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise RawDataError(f"{path}: cannot open as HDF5 ({exc})") from None
    with file:
        dataset = _hdf5_pattern_dataset(file, path, key)
        return tuple(dataset.shape), dataset.dtype, {**dict(file.attrs), **dict(dataset.attrs)}


def _hdf5_pattern_dataset(file: h5py.File, path: Path, key: str | None) -> h5py.Dataset:
    """The dataset ``key``, else the one :func:`_find_hdf5_patterns` picks."""
    name = key if key is not None else _find_hdf5_patterns(file, path)
    dataset = file.get(name)
    if not isinstance(dataset, h5py.Dataset):
        raise RawDataError(f"{path}: no dataset {name!r}; datasets: {sorted(_hdf5_datasets(file))}")
    return dataset


def _hdf5_datasets(file: h5py.File) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every dataset in ``file``."""
    found: dict[str, tuple[int, ...]] = {}
    file.visititems(lambda name, obj: found.update({name: obj.shape}) if isinstance(obj, h5py.Dataset) else None)
    return found


def _find_hdf5_patterns(file: h5py.File, path: Path) -> str:
    """``patterns`` or ``data`` at the root, else the only 3D/4D dataset in the file."""
    for name in PATTERN_NAMES:
        dataset = file.get(name)
        if isinstance(dataset, h5py.Dataset) and dataset.ndim in (3, 4):
            return name
    datasets = _hdf5_datasets(file)
    candidates = [name for name, shape in datasets.items() if len(shape) in (3, 4)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise RawDataError(f"{path}: no 3D or 4D dataset; datasets: {datasets}")
    raise RawDataError(f"{path}: several datasets could hold the patterns: {candidates}; set `key`")


def _read_raw_binary(path: Path, props: ManualProps) -> np.ndarray:
    """Frames of a headerless/headered raw file as an (n, k_y, k_x) view of a memory map."""
    if props.det_shape is None or props.dtype is None:
        raise RawDataError(f"{path}: raw binary needs `det_shape` and `dtype` in the plan")
    try:
        dtype = np.dtype(props.dtype)
    except TypeError as exc:
        raise RawDataError(f"{path}: unknown dtype {props.dtype!r}") from exc
    k_y, k_x = props.det_shape
    stored = (k_x, k_y) if props.det_flips and props.det_flips[2] else (k_y, k_x)
    frame_bytes = dtype.itemsize * k_y * k_x
    stride = frame_bytes + props.gap
    found = path.stat().st_size
    if props.scan_shape is not None:
        n_frames = math.prod(props.scan_shape)
        expected = props.offset + n_frames * stride
        if found < expected:
            raise RawDataError(
                f"{path} is truncated: {n_frames} frames of {frame_bytes} bytes + {props.gap} gap "
                f"after {props.offset} offset bytes need {expected} bytes, found {found}"
            )
        if found > expected:
            logger.warning("%s: ignoring %d bytes after the last frame", path, found - expected)
    else:
        n_frames, rest = divmod(found - props.offset, stride)
        if n_frames <= 0 or rest:
            raise RawDataError(
                f"{path}: {found} bytes is not {props.offset} offset bytes plus whole frames of "
                f"{stride} bytes ({frame_bytes} + {props.gap} gap); expected "
                f"{props.offset + max(n_frames, 1) * stride} bytes for {max(n_frames, 1)} frames"
            )
    buffer = np.memmap(path, dtype=np.uint8, mode="r")
    return np.ndarray(
        (n_frames, *stored),
        dtype=dtype,
        buffer=buffer,
        offset=props.offset,
        strides=(stride, stored[1] * dtype.itemsize, dtype.itemsize),
    )


def _merge_metadata(file_meta: dict[str, Any], props: ManualProps, path: Path) -> _Metadata:
    """Plan values where given, else the file's, else None (and centred by default)."""
    diff_step = props.diff_step
    if diff_step is None:
        diff_step = _number(file_meta, "diff_step_mrad", path)
    if diff_step is None:
        diff_step = _number(file_meta, "diff_step", path)
    scan_shape = props.scan_shape
    if scan_shape is None and "scan_shape" in file_meta:
        values = np.asarray(file_meta["scan_shape"]).ravel()
        if values.size != 2:
            raise RawDataError(f"{path}: metadata scan_shape should hold 2 numbers, got {values}")
        scan_shape = (int(values[0]), int(values[1]))
    scan_step = props.scan_step
    if scan_step is None:
        scan_step = _number(file_meta, "scan_step_A", path)
    if "fftshifted" in props.model_fields_set or "centred" not in file_meta:
        centred = not props.fftshifted
    else:
        centred = bool(np.asarray(file_meta["centred"]).reshape(()))
    return _Metadata(
        kv=props.kv if props.kv is not None else _number(file_meta, "kv", path),
        diff_step_mrad=diff_step,
        scan_step_A=scan_step,
        scan_shape=scan_shape,
        centred=centred,
    )


def _number(file_meta: dict[str, Any], name: str, path: Path) -> float | None:
    """Metadata ``name`` as a float, None when absent."""
    if name not in file_meta:
        return None
    value = np.asarray(file_meta[name])
    try:
        return float(value.reshape(()))
    except (TypeError, ValueError) as exc:
        raise RawDataError(f"{path}: metadata {name!r} is not one number: {value!r}") from exc
