"""The ``manual`` raw-data loader: formats, metadata, checks and fix-ups."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from phaser.io.manual import ManualProps, load_manual
from phaser.io.raw_data import RawDataError


@pytest.fixture
def patterns() -> np.ndarray:
    """A 4x4 scan of 16x16 non-negative patterns with distinct values."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 10, size=(4, 4, 16, 16)).astype(np.float32)


def test_npy_round_trip(tmp_path, patterns):
    path = tmp_path / "data.npy"
    np.save(path, patterns)
    raw = load_manual(ManualProps(path=path, diff_step=1.5, kv=200))
    assert raw.patterns.dtype == np.float32
    np.testing.assert_array_equal(raw.patterns, patterns)
    assert raw.scan_shape == (4, 4)
    assert (raw.kv, raw.diff_step_mrad, raw.source) == (200, 1.5, path)


@pytest.mark.parametrize("name", ["patterns", "data", "anything"])
def test_npz_round_trip(tmp_path, patterns, name):
    path = tmp_path / "data.npz"
    np.savez(path, **{name: patterns}, kv=np.array(300.0))
    raw = load_manual(ManualProps(path=path))
    np.testing.assert_array_equal(raw.patterns, patterns)
    assert raw.kv == 300.0


def test_npz_key_and_ambiguity(tmp_path, patterns):
    path = tmp_path / "data.npz"
    np.savez(path, first=patterns, second=patterns * 2)
    raw = load_manual(ManualProps(path=path, key="second"))
    np.testing.assert_array_equal(raw.patterns, patterns * 2)
    with pytest.raises(RawDataError, match="first.*second"):
        load_manual(ManualProps(path=path))
    with pytest.raises(RawDataError, match="third"):
        load_manual(ManualProps(path=path, key="third"))


def test_hdf5_round_trip_and_metadata(tmp_path, patterns):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kv"] = 80.0
        f.attrs["scan_step_A"] = 0.5
        dataset = f.create_dataset("patterns", data=patterns.reshape(16, 16, 16))
        dataset.attrs["diff_step_mrad"] = 2.0
        dataset.attrs["scan_shape"] = [4, 4]
    raw = load_manual(ManualProps(path=path))
    np.testing.assert_array_equal(raw.patterns, patterns)
    assert (raw.kv, raw.diff_step_mrad, raw.scan_step_A, raw.scan_shape) == (80, 2, 0.5, (4, 4))


def test_hdf5_key_and_auto_detect(tmp_path, patterns):
    path = tmp_path / "data.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("group/frames", data=patterns)
        f.create_dataset("mask", data=np.ones((16, 16)))
    np.testing.assert_array_equal(load_manual(ManualProps(path=path)).patterns, patterns)
    raw = load_manual(ManualProps(path=path, key="group/frames"))
    np.testing.assert_array_equal(raw.patterns, patterns)


def test_hdf5_several_candidates(tmp_path, patterns):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=patterns)
        f.create_dataset("b", data=patterns)
    with pytest.raises(RawDataError, match=r"several.*'a'.*'b'"):
        load_manual(ManualProps(path=path))


def test_plan_overrides_file(tmp_path, patterns):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(kv=80.0, diff_step=2.0, scan_step_A=0.5, centred=False)
        f.create_dataset("data", data=patterns)
    raw = load_manual(ManualProps(path=path, kv=300, diff_step=1.0, scan_step=0.25, fftshifted=False))
    assert (raw.kv, raw.diff_step_mrad, raw.scan_step_A) == (300, 1.0, 0.25)
    np.testing.assert_array_equal(raw.patterns, patterns)  # plan's fftshifted=False wins


def test_file_centred_false_means_fftshifted(tmp_path, patterns):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=patterns).attrs["centred"] = False
    raw = load_manual(ManualProps(path=path))
    np.testing.assert_array_equal(raw.patterns, np.fft.fftshift(patterns, axes=(-2, -1)))


def test_fftshifted_is_centred(tmp_path):
    corner = np.zeros((2, 2, 16, 16), np.float32)
    corner[..., 0, 0] = 5.0  # zero frequency at pixel 0
    path = tmp_path / "data.npy"
    np.save(path, corner)
    raw = load_manual(ManualProps(path=path, fftshifted=True))
    assert raw.patterns[0, 0, 8, 8] == 5.0
    assert raw.patterns.sum() == corner.sum()


@pytest.mark.parametrize("suffix", [".raw", ".bin", ".dat"])
def test_raw_binary_round_trip(tmp_path, patterns, suffix):
    path = tmp_path / f"data{suffix}"
    header, gap = b"H" * 12, b"\0" * 4
    frames = patterns.reshape(16, 16, 16).astype("<u2")
    path.write_bytes(header + b"".join(frame.tobytes() + gap for frame in frames))
    props = ManualProps(path=path, det_shape=(16, 16), dtype="<u2", offset=12, gap=4, scan_shape=(4, 4))
    raw = load_manual(props)
    np.testing.assert_array_equal(raw.patterns, frames.reshape(4, 4, 16, 16).astype(np.float32))
    no_scan = load_manual(props.model_copy(update={"scan_shape": None}))
    assert no_scan.patterns.shape == (16, 16, 16) and no_scan.scan_shape is None


def test_raw_binary_truncated(tmp_path, patterns):
    path = tmp_path / "data.raw"
    path.write_bytes(patterns.tobytes()[:-100])
    props = ManualProps(path=path, det_shape=(16, 16), dtype="float32", scan_shape=(4, 4))
    with pytest.raises(RawDataError, match=r"truncated.*16384 bytes, found 16284") as info:
        load_manual(props)
    assert str(path) in str(info.value)
    with pytest.raises(RawDataError, match="bytes"):
        load_manual(props.model_copy(update={"scan_shape": None}))


def test_raw_binary_needs_shape_and_dtype(tmp_path, patterns):
    path = tmp_path / "data.raw"
    path.write_bytes(patterns.tobytes())
    with pytest.raises(RawDataError, match="det_shape"):
        load_manual(ManualProps(path=path, dtype="float32"))


def test_missing_file(tmp_path):
    with pytest.raises(RawDataError, match="nowhere.npy"):
        load_manual(ManualProps(path=tmp_path / "nowhere.npy"))


def test_nan_rejected(tmp_path, patterns):
    patterns[1, 2, 3, 4] = np.nan
    patterns[0, 0, 0, 0] = np.inf
    path = tmp_path / "data.npy"
    np.save(path, patterns)
    with pytest.raises(RawDataError, match=r"data.npy: 2 of \d+ pixels are NaN or infinite"):
        load_manual(ManualProps(path=path))


def test_negative_clipped_with_warning(tmp_path, patterns, caplog):
    patterns[0, 0, :3, 0] = -1.0
    path = tmp_path / "data.npy"
    np.save(path, patterns)
    with caplog.at_level(logging.WARNING):
        raw = load_manual(ManualProps(path=path))
    assert raw.patterns.min() == 0.0
    assert "clipped 3 negative pixels" in caplog.text


def test_adu_divides(tmp_path, patterns):
    path = tmp_path / "data.npy"
    np.save(path, patterns)
    raw = load_manual(ManualProps(path=path, adu=4.0))
    np.testing.assert_allclose(raw.patterns, patterns / 4.0)


@pytest.mark.parametrize(
    ("flips", "expected"),
    [
        ((True, False, False), lambda p: p[..., ::-1, :]),
        ((False, True, False), lambda p: p[..., :, ::-1]),
        ((False, False, True), lambda p: np.swapaxes(p, -2, -1)),
        ((True, False, True), lambda p: np.swapaxes(p[..., ::-1, :], -2, -1)),
    ],
)
def test_det_flips(tmp_path, patterns, flips, expected):
    path = tmp_path / "data.npy"
    np.save(path, patterns)
    raw = load_manual(ManualProps(path=path, det_flips=flips))
    np.testing.assert_array_equal(raw.patterns, expected(patterns))


def test_3d_reshaped_or_kept(tmp_path, patterns):
    path = tmp_path / "data.npy"
    np.save(path, patterns.reshape(16, 16, 16))
    assert load_manual(ManualProps(path=path)).patterns.shape == (16, 16, 16)
    raw = load_manual(ManualProps(path=path, scan_shape=(2, 8)))
    assert raw.patterns.shape == (2, 8, 16, 16) and raw.scan_shape == (2, 8)


def test_scan_shape_mismatch(tmp_path, patterns):
    path = tmp_path / "data.npy"
    np.save(path, patterns.reshape(16, 16, 16))
    with pytest.raises(RawDataError, match=r"\(3, 4\) has 12 positions.*holds 16 patterns"):
        load_manual(ManualProps(path=path, scan_shape=(3, 4)))


def test_bad_dimensions(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.ones((16, 16)))
    with pytest.raises(RawDataError, match=r"shape \(16, 16\)"):
        load_manual(ManualProps(path=path))


def test_props_reject_unknown_fields():
    with pytest.raises(ValueError, match="wavelen"):
        ManualProps(path="x.npy", wavelen=0.02)


def _good_npy_bytes(tmp_path) -> bytes:
    np.save(tmp_path / "good.npy", np.ones((4, 4, 8, 8), np.float32))
    return (tmp_path / "good.npy").read_bytes()


def _nan_patterns() -> np.ndarray:
    data = np.ones((4, 4, 8, 8), np.float32)
    data[1, 2, 3, 4] = np.nan
    return data


BAD_FILES = {
    # name: (file name, writer, words the message must hold)
    "empty": ("d.npy", lambda p, good: p.write_bytes(b""), "is empty (0 bytes)"),
    "truncated": ("d.npy", lambda p, good: p.write_bytes(good[: len(good) // 2]), "truncated or damaged"),
    "header only": ("d.npy", lambda p, good: p.write_bytes(good[:20]), "truncated or damaged"),
    "text": ("d.npy", lambda p, good: p.write_text("1 2 3\n4 5 6\n"), "is not a .npy array file"),
    "pickled": (
        "d.npy",
        lambda p, good: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
        "holds Python objects (pickled)",
    ),
    "pickled npz": (
        "d.npz",
        lambda p, good: np.savez(p, patterns=np.array([None, 1], dtype=object)),
        "holds Python objects (pickled)",
    ),
    "not a zip": ("d.npz", lambda p, good: p.write_bytes(b"PK\x03\x04rubbish"), "not a readable .npz"),
    "not hdf5": ("d.h5", lambda p, good: p.write_bytes(b"rubbish"), "cannot open as HDF5"),
    "zero size": ("d.npy", lambda p, good: np.save(p, np.ones((0, 8, 8), np.float32)), "the pattern array is empty"),
    "rank 2": ("d.npy", lambda p, good: np.save(p, np.ones((8, 8), np.float32)), "got shape (8, 8)"),
    "strings": ("d.npy", lambda p, good: np.save(p, np.full((2, 4, 4), "a")), "must be real numbers"),
    "nan": ("d.npy", lambda p, good: np.save(p, _nan_patterns()), "1 of 1024 pixels are NaN or infinite; replace"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_files_name_the_file_and_the_problem(tmp_path, case):
    name, write, words = BAD_FILES[case]
    path = tmp_path / name
    write(path, _good_npy_bytes(tmp_path))
    with pytest.raises(RawDataError) as info:
        load_manual(ManualProps(path=path))
    assert str(path) in str(info.value) and words in str(info.value)


def test_scan_shape_that_disagrees_with_the_file(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((4, 4, 8, 8), np.float32))
    with pytest.raises(RawDataError, match=r"d\.npy: scan_shape \(3, 3\) has 9 positions but the file holds 16"):
        load_manual(ManualProps(path=tmp_path / "d.npy", scan_shape=(3, 3)))


def test_negative_counts_are_clipped_with_a_warning(tmp_path, caplog):
    data = np.ones((4, 4, 8, 8), np.float32)
    data[0, 0, :2, :3] = -5
    np.save(tmp_path / "d.npy", data)
    with caplog.at_level(logging.WARNING):
        raw = load_manual(ManualProps(path=tmp_path / "d.npy"))
    assert raw.patterns.min() == 0 and "clipped 6 negative pixels to 0" in caplog.text
