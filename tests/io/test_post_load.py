"""Post-load hooks: crop, bin, scale, offset, poisson."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from phaser.io.post_load import (
    POST_LOAD_HOOKS,
    BinProps,
    CropProps,
    OffsetProps,
    PoissonProps,
    ScaleProps,
    add_poisson_noise,
    bin_patterns,
    crop_patterns,
    offset_patterns,
    scale_patterns,
)
from phaser.io.raw_data import RawData, RawDataError


@pytest.fixture
def raw() -> RawData:
    """A 4x4 scan of 16x16 patterns, zero frequency marked at (8, 8)."""
    patterns = np.random.default_rng(1).uniform(0, 1, size=(4, 4, 16, 16)).astype(np.float32)
    patterns[..., 8, 8] = 100.0
    return RawData(patterns=patterns, kv=200.0, diff_step_mrad=1.0, scan_shape=(4, 4))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2)


def test_crop_detector_keeps_centre(raw, rng):
    for shape in [(8, 8), (7, 9)]:
        cropped = crop_patterns(raw, rng, CropProps(shape=shape))
        assert cropped.pattern_shape == shape
        assert cropped.patterns[0, 0, shape[0] // 2, shape[1] // 2] == 100.0
    assert raw.pattern_shape == (16, 16)  # input untouched


def test_crop_detector_too_large(raw, rng):
    with pytest.raises(RawDataError, match="larger"):
        crop_patterns(raw, rng, CropProps(shape=(32, 16)))


def test_crop_scan(raw, rng):
    cropped = crop_patterns(raw, rng, CropProps(scan_crop=[1, 3, 0, None]))
    assert cropped.patterns.shape == (2, 4, 16, 16) and cropped.scan_shape == (2, 4)
    np.testing.assert_array_equal(cropped.patterns, raw.patterns[1:3])


def test_crop_scan_needs_raster(raw, rng):
    flat = raw.with_patterns(raw.flat_patterns(), scan_shape=None)
    with pytest.raises(RawDataError, match="raster"):
        crop_patterns(flat, rng, CropProps(scan_crop=[0, 2, 0, 2]))
    with pytest.raises(ValueError, match="shape"):
        CropProps()


def test_bin_sums_counts(raw, rng):
    binned = bin_patterns(raw, rng, BinProps(factor=4))
    assert binned.pattern_shape == (4, 4) and binned.diff_step_mrad == 4.0
    np.testing.assert_allclose(binned.patterns.sum(axis=(-2, -1)), raw.patterns.sum(axis=(-2, -1)), rtol=1e-6)
    np.testing.assert_allclose(binned.patterns[0, 0, 0, 0], raw.patterns[0, 0, :4, :4].sum(), rtol=1e-6)


def test_bin_not_divisible(raw, rng):
    with pytest.raises(RawDataError, match=r"\(16, 16\).*factor 3"):
        bin_patterns(raw, rng, BinProps(factor=3))


def test_scale(raw, rng):
    scaled = scale_patterns(raw, rng, ScaleProps(scale=2.5))
    np.testing.assert_allclose(scaled.patterns, raw.patterns * 2.5)
    assert scaled.patterns.dtype == np.float32


def test_offset_clips_and_says_how_many(raw, rng, caplog):
    with caplog.at_level(logging.INFO):
        shifted = offset_patterns(raw, rng, OffsetProps(offset=0.5))
    expected = np.maximum(raw.patterns - 0.5, 0)
    np.testing.assert_allclose(shifted.patterns, expected)
    n_clipped = np.count_nonzero(raw.patterns < 0.5)
    assert f"clipped {n_clipped} of" in caplog.text


def test_poisson_dose(raw, rng):
    noisy = add_poisson_noise(raw, rng, PoissonProps(dose=1000.0))
    totals = noisy.flat_patterns().sum(axis=(-2, -1))
    assert totals.mean() == pytest.approx(1000.0, rel=0.02)
    assert np.all(noisy.patterns == np.round(noisy.patterns))  # integer counts
    assert noisy.patterns.dtype == np.float32


def test_poisson_scale_is_reproducible(raw):
    props = PoissonProps(scale=10.0)
    first = add_poisson_noise(raw, np.random.default_rng(5), props)
    second = add_poisson_noise(raw, np.random.default_rng(5), props)
    np.testing.assert_array_equal(first.patterns, second.patterns)
    assert first.patterns.mean() == pytest.approx(raw.patterns.mean() * 10, rel=0.02)
    with pytest.raises(ValueError, match="not both"):
        PoissonProps(dose=1.0, scale=1.0)


def test_registry_table_names_real_functions():
    import importlib

    for name, (ref, props_class) in POST_LOAD_HOOKS.items():
        module, _, function = ref.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert props_class.__name__.endswith("Props")


def test_original_format_names_are_accepted() -> None:
    """``bin: {bin}``, ``crop_data: {crop}`` and ``poisson: {gaussian}`` as in the original plans."""
    from pydantic import TypeAdapter

    from phaser.plan.hook_types import hook_field

    adapter = TypeAdapter(hook_field("post_load"))
    raw = RawData(np.ones((4, 4, 8, 8), np.float32), scan_shape=(4, 4))
    rng = np.random.default_rng(0)
    assert adapter.validate_python({"type": "bin", "bin": 2})(raw, rng).patterns.shape == (4, 4, 4, 4)
    assert adapter.validate_python({"type": "crop_data", "crop": [0, 2, 1, 3]})(raw, rng).scan_shape == (2, 2)
    noisy = adapter.validate_python({"type": "poisson", "scale": 100.0, "gaussian": 2.0})(raw, rng)
    assert noisy.patterns.min() >= 0 and abs(noisy.patterns.mean() - 100.0) < 2.0
