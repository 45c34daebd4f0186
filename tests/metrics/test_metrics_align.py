"""Tests of phaser.metrics.align: registration, background fits, masks and align_to."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.metrics import (
    align_to,
    background_image,
    fit_phase_background,
    illuminated_mask,
    mask_bounding_box,
    probe_radius_px,
    register_shift,
    rmse,
)

SHAPE = (64, 64)
rng = np.random.default_rng(3)
CENTRES = rng.uniform(4, 60, size=(40, 2))
HEIGHTS = rng.uniform(0.2, 1.0, size=40)


def blobs(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Gaussian 'atoms' [rad] with their content moved by ``shift`` [px] (not periodically)."""
    y, x = np.indices(SHAPE, dtype=np.float64)
    out = np.zeros(SHAPE)
    for (cy, cx), height in zip(CENTRES, HEIGHTS, strict=True):
        out += height * np.exp(-((y - cy - shift[0]) ** 2 + (x - cx - shift[1]) ** 2) / 4.5)
    return out


def central_mask(margin: int = 12) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[margin:-margin, margin:-margin] = True
    return mask


@pytest.mark.parametrize("shift", [(0.3, -0.7), (1.37, 0.21), (-2.62, 3.08)])
def test_register_shift_recovers_a_sub_pixel_shift(shift):
    moving = blobs((-shift[0], -shift[1]))  # moving by +shift puts it back on the reference
    reference = blobs()
    np.testing.assert_allclose(register_shift(moving, reference), shift, atol=0.05)
    np.testing.assert_allclose(register_shift(moving, reference, mask=central_mask()), shift, atol=0.05)


def test_fit_phase_background_is_exact_for_a_plane():
    mask = central_mask()
    plane = background_image((0.4, 0.02, -0.03), SHAPE)
    np.testing.assert_allclose(fit_phase_background(plane, mask), (0.4, 0.02, -0.03), atol=1e-12)
    offset_only = fit_phase_background(np.full(SHAPE, 0.7), mask, ramp=False)
    np.testing.assert_allclose(offset_only, (0.7, 0.0, 0.0), atol=1e-12)


def test_align_to_recovers_shift_offset_and_ramp():
    shift, offset, ramp = (0.45, -1.3), 0.8, (0.01, -0.02)
    # a + b*y + c*x in the aligned (reference) frame is this plane before the shift
    image = blobs((-shift[0], -shift[1])) + background_image(
        (offset + ramp[0] * shift[0] + ramp[1] * shift[1], *ramp), SHAPE
    )
    pair = align_to(blobs(), image, central_mask())
    np.testing.assert_allclose(pair.shift, shift, atol=0.05)
    assert pair.offset == pytest.approx(offset, abs=0.01)
    np.testing.assert_allclose(pair.ramp, ramp, atol=1e-3)
    assert pair.scale == 1.0
    assert rmse(pair.image_aligned, pair.reference, pair.mask) < 0.01


def test_align_to_fits_a_scale_and_honours_disabled_terms():
    reference = blobs()
    pair = align_to(reference, 1.5 * reference + 0.2, central_mask(), scale=True)
    assert pair.scale == pytest.approx(1.5, rel=1e-6)
    assert pair.offset == pytest.approx(0.2, abs=1e-6)
    np.testing.assert_allclose(pair.shift, (0.0, 0.0), atol=0.05)
    fixed = align_to(reference, reference + 0.3, shift=False, offset=False, ramp=False)
    assert fixed.shift == (0.0, 0.0) and fixed.offset == 0.0
    np.testing.assert_allclose(fixed.difference, 0.3)
    given = align_to(reference, blobs((-0.5, 0.0)), central_mask(), shift=(0.5, 0.0))
    assert given.shift == (0.5, 0.0)
    assert rmse(given.image_aligned, reference, given.mask) < 1e-3


def test_illuminated_mask_geometry():
    mask = illuminated_mask((20, 20), [[10.0, 10.0]], 3.0)
    assert mask.sum() == 29  # lattice points within a radius of 3
    assert mask[10, 13] and mask[7, 10] and not mask[12, 13] and not mask[10, 14]
    two = illuminated_mask((20, 30), [[10.0, 5.0], [10.0, 20.0]], 2.0)
    assert two.sum() == 2 * 13 and two[10, 5] and two[10, 20] and not two[10, 12]
    rows, cols = mask_bounding_box(two)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (8, 13, 3, 23)
    raster = np.stack(np.meshgrid(np.arange(10, 30), np.arange(15, 40), indexing="ij"), -1)
    scanned = illuminated_mask((40, 50), raster.reshape(-1, 2), 1.0)
    assert scanned[10:30, 15:40].all() and scanned.sum() == 20 * 25 + 2 * 20 + 2 * 25


def test_probe_radius_of_a_uniform_disk():
    y, x = np.indices((64, 64)) - 32
    disk = (np.hypot(y, x) <= 10).astype(complex)[None]
    assert probe_radius_px(disk, 1.0) == pytest.approx(10.0, abs=0.5)
    assert probe_radius_px(disk, 0.5) == pytest.approx(10 / np.sqrt(2), abs=0.5)
