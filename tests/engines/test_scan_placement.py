"""Where the scan sits on the object grid: as in the original package, and every window inside the object."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.engines.forward_jax import split_positions
from phaser.initial import object_shape_for, place_positions
from phaser.physics.scan import raster_positions_A

SAMPLING_A = 0.2035


@pytest.mark.parametrize("pad_px", [0.0, 5.0])
def test_first_position_half_a_pixel_past_the_window_centre(pad_px):
    """The original's probe lands half a pixel past its window's centre; ours sits where it does,
    so the same plan on the same data gives the same object array (``benchmarks/same_groups.py``)."""
    positions = place_positions(raster_positions_A((8, 8), 0.366), (SAMPLING_A, SAMPLING_A), (64, 64), pad_px)
    first_px = positions.min(axis=0) / SAMPLING_A
    np.testing.assert_allclose(first_px, 32 + pad_px + 0.5, atol=1e-9)


@pytest.mark.parametrize("pad_px", [0.0, 2.0, 5.0])
@pytest.mark.parametrize("step_A", [0.2035, 0.366, 1.0])
def test_every_window_fits_without_clipping(pad_px, step_A):
    """A window clipped at the object's edge would move the probe by more than half a pixel."""
    positions = place_positions(raster_positions_A((16, 16), step_A), (SAMPLING_A, SAMPLING_A), (32, 32), pad_px)
    shape = object_shape_for(positions / SAMPLING_A, (32, 32), pad_px)
    top_left, frac = split_positions(jnp.asarray(positions / SAMPLING_A), (32, 32), shape)
    top_left, frac = np.asarray(top_left), np.asarray(frac)
    assert np.all(np.abs(frac) <= 0.5 + 1e-6)
    assert np.all(top_left >= 0) and np.all(top_left + 32 <= np.asarray(shape))
