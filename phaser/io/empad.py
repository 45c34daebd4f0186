"""The ``empad`` raw-data hook: EMPAD ``.raw`` files and the XML metadata written beside them.

An EMPAD frame is stored as 130 rows of 128 little-endian float32 pixels: the 128x128 detector
image followed by 2 rows of per-frame metadata, which are dropped. Frames follow in raster order
(fast axis x). Patterns are stored centred (not fftshifted).
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import PositiveFloat, PositiveInt

from phaser.hooks import HookProps
from phaser.io.manual import apply_det_flips, to_electron_counts
from phaser.io.metadata import DataMetadata, check_data_file
from phaser.io.raw_data import RawData, RawDataError

logger = logging.getLogger(__name__)

DETECTOR_PIXELS = 128
"""EMPAD detector size along each axis (pixels)."""
STORED_ROWS = 130
"""Rows stored per frame: the detector rows plus 2 metadata rows."""
FRAME_BYTES = STORED_ROWS * DETECTOR_PIXELS * 4
"""Bytes per stored frame (float32)."""
DEFAULT_FLIPS = (True, False, False)
"""Detector flips used when the plan gives none: the usual EMPAD orientation (flip k_y)."""


class EmpadProps(HookProps):
    """Parameters of :func:`load_empad`; a value given here overrides the XML metadata."""

    path: Path
    """The EMPAD ``.raw`` file, or its XML metadata file."""
    diff_step: PositiveFloat | None = None
    """Reciprocal-space size of a detector pixel (mrad per pixel)."""
    kv: PositiveFloat | None = None
    """Accelerating voltage (kV); read from the XML ``high_voltage`` when None."""
    adu: PositiveFloat | None = None
    """Detector counts per electron (counts/e-); patterns are divided by it."""
    det_flips: tuple[bool, bool, bool] | None = None
    """(flip k_y, flip k_x, transpose) of the detector axes; None means (True, False, False)."""
    scan_shape: tuple[PositiveInt, PositiveInt] | None = None
    """Raster scan shape (scan_y, scan_x) in positions; read from the XML when None."""


@dataclass(frozen=True)
class EmpadXml:
    """What the EMPAD XML metadata says about a scan; None where a tag is missing."""

    raw_filename: str | None
    scan_shape: tuple[int, int] | None
    """(scan_y, scan_x) in positions."""
    kv: float | None
    """Accelerating voltage (kV)."""
    camera_length_m: float | None
    """Nominal camera length (m)."""
    scan_step_A: float | None
    """Scan step along x (A): field of view over the larger scan dimension."""
    scan_rotation_deg: float | None
    """Scan rotation (degrees)."""


def load_empad(props: EmpadProps) -> RawData:
    """Load an EMPAD scan as float32 ``(scan_y, scan_x, 128, 128)`` patterns in electrons.

    The scan shape comes from the plan, else the XML, else the file name (``..._x{nx}_y{ny}...``),
    else a square scan when the frame count is a perfect square.
    """
    raw_path, xml = _locate(Path(props.path).expanduser())
    xml_shape = xml.scan_shape if xml is not None else None
    scan_shape = props.scan_shape or xml_shape or _infer_scan_shape(raw_path)
    frames = _read_frames(raw_path, scan_shape)
    patterns = to_electron_counts(apply_det_flips(frames, props.det_flips or DEFAULT_FLIPS), props.adu, raw_path)
    kv = props.kv if props.kv is not None else (xml.kv if xml is not None else None)
    extra: dict = {"loader": "empad"}
    if xml is not None:
        extra.update(camera_length_m=xml.camera_length_m, scan_rotation_deg=xml.scan_rotation_deg)
    return RawData(
        patterns=np.ascontiguousarray(patterns),
        kv=kv,
        diff_step_mrad=props.diff_step,
        scan_shape=tuple(scan_shape),
        scan_step_A=xml.scan_step_A if xml is not None else None,
        source=raw_path,
        extra=extra,
    )


def read_empad_metadata(props: EmpadProps) -> DataMetadata:
    """What :func:`load_empad` would load, from the XML and the raw file's size (no frames read)."""
    raw_path, xml = _locate(Path(props.path).expanduser())
    xml_shape = xml.scan_shape if xml is not None else None
    scan_shape = props.scan_shape or xml_shape or _infer_scan_shape(raw_path)
    _check_size(raw_path, scan_shape)
    return DataMetadata(
        source=raw_path,
        n_patterns=math.prod(scan_shape),
        pattern_shape=(DETECTOR_PIXELS, DETECTOR_PIXELS),
        scan_shape=tuple(scan_shape),  # type: ignore[arg-type]
        kv=props.kv if props.kv is not None else (xml.kv if xml is not None else None),
        diff_step_mrad=props.diff_step,
        scan_step_A=xml.scan_step_A if xml is not None else None,
    )


def read_empad_xml(path: Path) -> EmpadXml:
    """Parse the EMPAD XML metadata at ``path`` (tags as written by the EMPAD acquisition)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise RawDataError(f"{path}: cannot read EMPAD XML metadata ({exc})") from exc
    if root.find("scan_parameters/series_count") is not None:
        raise RawDataError(f"{path}: this EMPAD acquisition is a series, not a 4D-STEM scan")
    raw_file = root.find("raw_file")
    scan = root.find("scan_parameters[@mode='acquire']")
    if scan is None:
        scan = root.find("scan_parameters")
    n_x, n_y = _xml_number(scan, "scan_resolution_x"), _xml_number(scan, "scan_resolution_y")
    scan_shape = (int(n_y), int(n_x)) if n_x is not None and n_y is not None else None
    voltage_v = _xml_number(root, "iom_measurements/high_voltage")
    rotation_rad = _xml_number(root, "iom_measurements/scan_rotation")
    return EmpadXml(
        raw_filename=raw_file.get("filename") if raw_file is not None else None,
        scan_shape=scan_shape,
        kv=voltage_v / 1e3 if voltage_v is not None else None,
        camera_length_m=_xml_number(root, "iom_measurements/nominal_camera_length"),
        scan_step_A=_scan_step_A(root, scan, scan_shape),
        scan_rotation_deg=math.degrees(rotation_rad) if rotation_rad is not None else None,
    )


def _scan_step_A(
    root: ElementTree.Element, scan: ElementTree.Element | None, shape: tuple[int, int] | None
) -> float | None:
    """Field of view along x (scaled by ``scan_size``) over the larger scan dimension, in A."""
    fov_x_m = _xml_number(root, "iom_measurements/full_scan_field_of_view/x")
    scale = _xml_number(root, "iom_measurements/full_scan_field_of_view/scale_factor")
    scan_size = _xml_number(scan, "scan_size")
    if fov_x_m is None or shape is None:
        return None
    fov_x_m *= (scan_size if scan_size is not None else 1.0) / (scale or 1.0)
    return fov_x_m / max(shape) * 1e10


def _xml_number(element: ElementTree.Element | None, tag: str) -> float | None:
    """Text of ``element/tag`` as a float, None when absent or not a number."""
    found = element.find(tag) if element is not None else None
    try:
        return float(found.text) if found is not None and found.text else None
    except ValueError:
        return None


def _locate(path: Path) -> tuple[Path, EmpadXml | None]:
    """The raw file and the XML metadata for ``path`` (either one of them)."""
    check_data_file(path, "EMPAD file")
    if path.suffix.lower() == ".xml":
        xml = read_empad_xml(path)
        if xml.raw_filename is None:
            raise RawDataError(f"{path}: XML metadata names no raw file (<raw_file filename=...>)")
        raw_path = path.parent / xml.raw_filename
        if not raw_path.is_file():
            raise RawDataError(f"EMPAD raw file {raw_path} named in {path} not found")
        check_data_file(raw_path, "EMPAD raw file")
        return raw_path, xml
    beside = path.with_suffix(".xml")
    if beside.is_file():
        return path, read_empad_xml(beside)
    for candidate in sorted(path.parent.glob("*.xml")):
        try:
            xml = read_empad_xml(candidate)
        except RawDataError:
            continue
        if xml.raw_filename == path.name:
            return path, xml
    logger.info("%s: no EMPAD XML metadata found beside it", path)
    return path, None


def _infer_scan_shape(raw_path: Path) -> tuple[int, int]:
    """Scan shape from the file name ``..._x{nx}_y{ny}...``, else a square from the frame count."""
    match = re.search(r"x(\d+)_y(\d+)", raw_path.name)
    if match:
        return int(match[2]), int(match[1])
    size = raw_path.stat().st_size
    n_frames, rest = divmod(size, FRAME_BYTES)
    side = math.isqrt(n_frames)
    if rest or n_frames == 0 or side * side != n_frames:
        raise RawDataError(
            f"{raw_path}: cannot infer the scan shape from {size} bytes "
            f"({n_frames} frames of {FRAME_BYTES} bytes, remainder {rest}); give scan_shape"
        )
    logger.info("%s: no scan shape given, assuming a square %dx%d scan", raw_path, side, side)
    return side, side


def _read_frames(raw_path: Path, scan_shape: tuple[int, int]) -> np.ndarray:
    """(scan_y, scan_x, 128, 128) view of the memory-mapped file, metadata rows dropped."""
    _check_size(raw_path, scan_shape)
    frames = np.memmap(raw_path, dtype="<f4", mode="r", shape=(*scan_shape, STORED_ROWS, DETECTOR_PIXELS))
    return frames[..., :DETECTOR_PIXELS, :]


def _check_size(raw_path: Path, scan_shape: tuple[int, int]) -> None:
    """Refuse a raw file whose size is not the scan's frames (truncated, or another scan's)."""
    expected = math.prod(scan_shape) * FRAME_BYTES
    found = raw_path.stat().st_size
    if found != expected:
        problem = "is truncated" if found < expected else "is larger than the scan"
        raise RawDataError(
            f"{raw_path} {problem}: scan {tuple(scan_shape)} of {STORED_ROWS}x{DETECTOR_PIXELS} "
            f"float32 frames needs {expected} bytes, found {found}"
        )
