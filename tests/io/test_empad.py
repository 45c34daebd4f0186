"""The ``empad`` raw-data loader on synthetic EMPAD files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from phaser.io.empad import EmpadProps, load_empad, read_empad_xml
from phaser.io.raw_data import RawDataError

SCAN = (3, 4)  # (scan_y, scan_x)

XML = """<?xml version="1.0"?>
<root name="synthetic">
  <timestamp timestamp="1700000000" isoformat="2023-11-14T22:13:20"/>
  <raw_file filename="{raw}"/>
  <iom_measurements>
    <high_voltage>300000.0</high_voltage>
    <nominal_camera_length>0.185</nominal_camera_length>
    <scan_rotation>0.0</scan_rotation>
    <full_scan_field_of_view>
      <x>2e-9</x><y>2e-9</y><scale_factor>1.0</scale_factor>
    </full_scan_field_of_view>
  </iom_measurements>
  <scan_parameters mode="acquire">
    <scan_resolution_x>{nx}</scan_resolution_x>
    <scan_resolution_y>{ny}</scan_resolution_y>
    <scan_size>1.0</scan_size>
  </scan_parameters>
</root>
"""


def detector_images(scan: tuple[int, int]) -> np.ndarray:
    """Distinct non-negative 128x128 images, one per scan position."""
    n_y, n_x = scan
    index = np.arange(n_y * n_x * 128 * 128, dtype=np.float32) % 1000
    return index.reshape(n_y, n_x, 128, 128)


def write_empad(path, images: np.ndarray) -> None:
    """Store ``images`` as EMPAD frames: 128 detector rows plus 2 metadata rows of junk."""
    stored = np.full((*images.shape[:2], 130, 128), -7e6, dtype="<f4")
    stored[..., :128, :] = images
    path.write_bytes(stored.tobytes())


def write_xml(path, raw_name: str, scan: tuple[int, int]) -> None:
    path.write_text(XML.format(raw=raw_name, nx=scan[1], ny=scan[0]))


def test_reads_frames_and_xml(tmp_path):
    images = detector_images(SCAN)
    write_empad(tmp_path / "scan.raw", images)
    write_xml(tmp_path / "scan.xml", "scan.raw", SCAN)
    raw = load_empad(EmpadProps(path=tmp_path / "scan.raw", det_flips=(False, False, False)))
    assert raw.patterns.dtype == np.float32 and raw.patterns.shape == (3, 4, 128, 128)
    np.testing.assert_array_equal(raw.patterns, images)  # metadata rows dropped
    assert raw.scan_shape == SCAN and raw.kv == 300.0
    assert raw.scan_step_A == pytest.approx(2e-9 / 4 * 1e10)
    assert raw.extra["camera_length_m"] == pytest.approx(0.185)


def test_path_to_xml_and_other_xml_name(tmp_path):
    images = detector_images(SCAN)
    write_empad(tmp_path / "data_file.raw", images)
    write_xml(tmp_path / "acquisition.xml", "data_file.raw", SCAN)
    from_xml = load_empad(EmpadProps(path=tmp_path / "acquisition.xml"))
    from_raw = load_empad(EmpadProps(path=tmp_path / "data_file.raw"))
    np.testing.assert_array_equal(from_xml.patterns, images[..., ::-1, :])  # default: flip k_y
    np.testing.assert_array_equal(from_raw.patterns, from_xml.patterns)
    assert from_raw.scan_shape == SCAN


def test_read_xml_tags(tmp_path):
    write_xml(tmp_path / "m.xml", "s.raw", (5, 7))
    xml = read_empad_xml(tmp_path / "m.xml")
    assert (xml.raw_filename, xml.scan_shape, xml.kv) == ("s.raw", (5, 7), 300.0)


def test_plan_overrides_xml(tmp_path):
    write_empad(tmp_path / "scan.raw", detector_images((2, 6)))
    write_xml(tmp_path / "scan.xml", "scan.raw", SCAN)
    props = EmpadProps(path=tmp_path / "scan.raw", kv=200, scan_shape=(2, 6), diff_step=0.8, adu=2)
    raw = load_empad(props)
    assert (raw.kv, raw.scan_shape, raw.diff_step_mrad) == (200, (2, 6), 0.8)
    np.testing.assert_allclose(raw.patterns, detector_images((2, 6))[..., ::-1, :] / 2)


def test_square_scan_inferred_without_xml(tmp_path, caplog):
    write_empad(tmp_path / "scan.raw", detector_images((3, 3)))
    with caplog.at_level(logging.INFO):
        raw = load_empad(EmpadProps(path=tmp_path / "scan.raw"))
    assert raw.scan_shape == (3, 3) and raw.kv is None
    assert "square 3x3" in caplog.text


def test_scan_shape_from_file_name(tmp_path):
    write_empad(tmp_path / "scan_x4_y3.raw", detector_images(SCAN))
    assert load_empad(EmpadProps(path=tmp_path / "scan_x4_y3.raw")).scan_shape == SCAN


def test_not_square_without_xml(tmp_path):
    write_empad(tmp_path / "scan.raw", detector_images(SCAN))
    with pytest.raises(RawDataError, match="12 frames.*scan_shape"):
        load_empad(EmpadProps(path=tmp_path / "scan.raw"))


def test_truncated(tmp_path):
    path = tmp_path / "scan.raw"
    write_empad(path, detector_images(SCAN))
    path.write_bytes(path.read_bytes()[:-1000])
    write_xml(tmp_path / "scan.xml", "scan.raw", SCAN)
    expected = 12 * 130 * 128 * 4
    with pytest.raises(RawDataError, match=f"truncated.*{expected} bytes, found {expected - 1000}"):
        load_empad(EmpadProps(path=path))


def test_negative_clipped(tmp_path, caplog):
    images = detector_images((2, 2))
    images[0, 0, 5, :10] = -3.0
    write_empad(tmp_path / "scan.raw", images)
    with caplog.at_level(logging.WARNING):
        raw = load_empad(EmpadProps(path=tmp_path / "scan.raw"))
    assert raw.patterns.min() == 0.0 and "clipped 10 negative pixels" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(RawDataError, match="absent.raw"):
        load_empad(EmpadProps(path=tmp_path / "absent.raw"))
