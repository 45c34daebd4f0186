"""Raster scan positions: shape, order (fast axis x), centring, step, rotation and affine."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.physics.scan import raster_positions_A


def test_shape_order_and_step():
    pos = raster_positions_A((3, 4), 0.5)
    assert pos.shape == (12, 2)
    grid = pos.reshape(3, 4, 2)
    # fast axis x: along a row only x changes, by one step
    np.testing.assert_allclose(np.diff(grid[..., 1], axis=1), 0.5)
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=1), 0.0)
    # slow axis y
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=0), 0.5)
    np.testing.assert_allclose(np.diff(grid[..., 1], axis=0), 0.0)


def test_zero_mean():
    for shape in [(3, 4), (16, 16), (1, 5)]:
        np.testing.assert_allclose(raster_positions_A(shape, 0.7, rotation_deg=17.0).mean(axis=0), 0.0, atol=1e-12)


def test_separate_steps():
    grid = raster_positions_A((2, 3), (0.4, 0.9)).reshape(2, 3, 2)
    assert grid[1, 0, 0] - grid[0, 0, 0] == pytest.approx(0.4)
    assert grid[0, 1, 1] - grid[0, 0, 1] == pytest.approx(0.9)


def test_rotation_90_maps_x_to_y():
    """Counter-clockwise: the fast (x) direction turns into +y, the slow (+y) direction into -x."""
    plain = raster_positions_A((3, 4), 1.0)
    rotated = raster_positions_A((3, 4), 1.0, rotation_deg=90.0)
    np.testing.assert_allclose(rotated[:, 0], plain[:, 1], atol=1e-12)
    np.testing.assert_allclose(rotated[:, 1], -plain[:, 0], atol=1e-12)
    fast_step = rotated[1] - rotated[0]
    np.testing.assert_allclose(fast_step, [1.0, 0.0], atol=1e-12)


def test_rotation_preserves_distances():
    plain = raster_positions_A((5, 6), 0.6)
    rotated = raster_positions_A((5, 6), 0.6, rotation_deg=33.0)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(plain, axis=1), atol=1e-12)


def test_affine_applied_after_rotation():
    affine = np.array([[1.1, 0.05], [-0.02, 0.95]])
    rotated = raster_positions_A((4, 5), 0.6, rotation_deg=20.0)
    distorted = raster_positions_A((4, 5), 0.6, rotation_deg=20.0, affine=affine)
    np.testing.assert_allclose(distorted, rotated @ affine.T, atol=1e-12)
    # a scaling affine stretches the y step only
    stretched = raster_positions_A((3, 3), 1.0, affine=np.diag([2.0, 1.0])).reshape(3, 3, 2)
    assert stretched[1, 0, 0] - stretched[0, 0, 0] == pytest.approx(2.0)
    assert stretched[0, 1, 1] - stretched[0, 0, 1] == pytest.approx(1.0)
