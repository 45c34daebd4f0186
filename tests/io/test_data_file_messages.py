"""EMPAD and tilt files get the messages data files get: the file named, what is wrong said.

Each case is refused the same way by the loader (``run``) and by the header-only reader
(``validate``), so the two cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phaser.initial import CustomTiltProps, check_tilt_file, custom_tilt
from phaser.io.empad import EmpadProps, load_empad, read_empad_metadata
from phaser.io.raw_data import RawDataError
from tests.io.test_empad import SCAN, detector_images, write_empad, write_xml


def _good_raw(tmp_path: Path) -> Path:
    write_empad(tmp_path / "scan.raw", detector_images(SCAN))
    write_xml(tmp_path / "scan.xml", "scan.raw", SCAN)
    return tmp_path / "scan.raw"


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


EMPAD_CASES = {
    # name: (writer returning the path given to the hook, the file the message names, words)
    "empty raw": (lambda d: _cut(_good_raw(d), 0), "scan.raw", "is empty (0 bytes)"),
    "truncated raw": (lambda d: _cut(_good_raw(d), 130 * 128 * 4 * 5), "scan.raw", "is truncated"),
    "too large for its scan": (
        lambda d: (_good_raw(d), write_xml(d / "scan.xml", "scan.raw", (2, 2)))[0],
        "scan.raw",
        "is larger than the scan",
    ),
    "text named .raw, no xml": (
        lambda d: (d / "notes_x3_y3.raw").write_text("not frames\n") and d / "notes_x3_y3.raw",
        "notes_x3_y3.raw",
        "is truncated",
    ),
    "empty xml": (lambda d: (_good_raw(d), _cut(d / "scan.xml", 0))[1], "scan.xml", "is empty (0 bytes)"),
    "damaged xml": (lambda d: (_good_raw(d), _cut(d / "scan.xml", 40))[1], "scan.xml", "cannot read EMPAD XML"),
    "xml naming a missing raw": (
        lambda d: (write_xml(d / "a.xml", "gone.raw", SCAN), d / "a.xml")[1],
        "gone.raw",
        "not found",
    ),
    "no shape to infer": (
        lambda d: (d / "frames.raw").write_bytes(b"\0" * 130 * 128 * 4 * 3) and d / "frames.raw",
        "frames.raw",
        "cannot infer the scan shape",
    ),
}


@pytest.mark.parametrize("case", sorted(EMPAD_CASES))
@pytest.mark.parametrize("reader", [load_empad, read_empad_metadata], ids=["load", "metadata"])
def test_bad_empad_files_name_the_file_and_the_problem(tmp_path: Path, case: str, reader) -> None:
    write, named, words = EMPAD_CASES[case]
    path = write(tmp_path)
    with pytest.raises(RawDataError) as info:
        reader(EmpadProps(path=path))
    assert str(tmp_path / named) in str(info.value) and words in str(info.value)


def test_empad_metadata_is_what_the_loader_gives(tmp_path: Path) -> None:
    raw = load_empad(EmpadProps(path=_good_raw(tmp_path)))
    meta = read_empad_metadata(EmpadProps(path=tmp_path / "scan.raw"))
    assert (meta.n_patterns, meta.pattern_shape, meta.scan_shape) == (12, (128, 128), raw.scan_shape)
    assert (meta.kv, meta.scan_step_A, meta.diff_step_mrad) == (raw.kv, raw.scan_step_A, None)


def _npy(array, **kwargs):
    def write(path: Path) -> Path:
        np.save(path, array, **kwargs)
        return path

    return write


TILT_CASES = {
    "missing": (lambda p: p, "tilt file", "not found"),
    "empty": (lambda p: p.write_bytes(b"") and p or p, "", "is empty (0 bytes)"),
    "text": (lambda p: p.write_text("0 0\n1 1\n") and p, "", "is not a .npy array file"),
    "truncated": (lambda p: _cut(_npy(np.zeros((12, 2)))(p), 140), "", "is truncated or damaged"),
    "pickled": (_npy(np.array([None, {}], dtype=object), allow_pickle=True), "", "holds Python objects (pickled)"),
    "strings": (_npy(np.full((12, 2), "a")), "", "tilts must be real numbers"),
    "zero size": (_npy(np.zeros((0, 2))), "", "holds shape (0, 2); expected (P, 2)"),
    "not pairs": (_npy(np.zeros((12, 3))), "", "holds shape (12, 3); expected (P, 2)"),
    "rank 1": (_npy(np.zeros(24)), "", "holds shape (24,)"),
    "wrong count": (_npy(np.zeros((3, 3, 2))), "", "holds 9 tilts (shape (3, 3, 2)) but the scan has 12 positions"),
}


@pytest.mark.parametrize("case", sorted(TILT_CASES))
def test_bad_tilt_files_name_the_field_the_file_and_the_problem(tmp_path: Path, case: str) -> None:
    write, _, words = TILT_CASES[case]
    path = write(tmp_path / "tilt.npy")
    ctx = None  # the tilt hook reads only the file
    for attempt in (lambda: custom_tilt(ctx, 12, CustomTiltProps(path=path)), lambda: check_tilt_file(path, 12)):
        with pytest.raises(RawDataError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith("init.tilt.path: ") and str(path) in message and words in message


def test_non_finite_tilts_are_refused(tmp_path: Path) -> None:
    tilt = np.zeros((12, 2))
    tilt[3, 1] = np.nan
    np.save(tmp_path / "tilt.npy", tilt)
    with pytest.raises(RawDataError, match=r"init\.tilt\.path: .*tilt\.npy holds NaN or infinite tilts"):
        custom_tilt(None, 12, CustomTiltProps(path=tmp_path / "tilt.npy"))
    np.save(tmp_path / "tilt.npy", np.ones((3, 4, 2)))
    np.testing.assert_array_equal(custom_tilt(None, 12, CustomTiltProps(path=tmp_path / "tilt.npy")), np.ones((12, 2)))
