"""Grouping scan positions: partitions, balanced sizes, compactness and padding."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.engines.grouping import compact_groups, make_groups, pad_groups, sparse_groups
from phaser.physics.scan import raster_positions_A

POSITIONS = raster_positions_A((16, 16), 0.6)  # 256 positions


def _assert_partition(groups, n):
    joined = np.concatenate(groups)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def _assert_balanced(groups, group_size):
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) <= group_size
    assert len(groups) == int(np.ceil(sum(sizes) / group_size))


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n_side", "group_size"), [(16, 32), (16, 50), (5, 7), (3, 64)])
def test_groups_partition_positions_in_balanced_sizes(compact, shuffle, n_side, group_size):
    positions = raster_positions_A((n_side, n_side), 0.6)
    groups = make_groups(positions, group_size, compact, shuffle, np.random.default_rng(0))
    _assert_partition(groups, len(positions))
    _assert_balanced(groups, group_size)


def test_sparse_groups_differ_between_calls():
    rng = np.random.default_rng(0)
    first = sparse_groups(256, 32, rng)
    second = sparse_groups(256, 32, rng)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    _assert_partition(first, 256)


def test_unshuffled_groups_are_deterministic():
    a = make_groups(POSITIONS, 32, False, False, np.random.default_rng(0))
    b = make_groups(POSITIONS, 32, False, False, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _mean_intra_group_distance(groups) -> float:
    means = []
    for g in groups:
        pts = POSITIONS[g]
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        means.append(d.sum() / (len(g) * (len(g) - 1)))
    return float(np.mean(means))


def test_compact_groups_are_spatially_compact():
    compact = compact_groups(POSITIONS, 32)
    sparse = sparse_groups(len(POSITIONS), 32, np.random.default_rng(0))
    d_compact, d_sparse = _mean_intra_group_distance(compact), _mean_intra_group_distance(sparse)
    # 8 groups of 32 on a 16x16 raster are 4x8 blocks: 3.3 steps apart on average, random ones 8.3
    assert d_compact < 0.5 * d_sparse
    # and each compact group's bounding box covers at most a quarter of the scan
    extent = np.ptp(POSITIONS, axis=0)
    for g in compact:
        box = np.ptp(POSITIONS[g], axis=0)
        assert box[0] * box[1] <= 0.25 * extent[0] * extent[1] + 1e-9


def test_shuffle_only_reorders_compact_groups():
    plain = compact_groups(POSITIONS, 32)
    shuffled = make_groups(POSITIONS, 32, True, True, np.random.default_rng(3))
    assert sorted(map(tuple, plain)) == sorted(map(tuple, shuffled))


def test_pad_groups_weights_and_indices():
    groups = [np.array([4, 5, 6]), np.array([1, 2]), np.array([0, 3, 7])]
    indices, weights = pad_groups(groups)
    assert indices.shape == weights.shape == (3, 3)
    assert indices.dtype == np.int32 and weights.dtype == np.float32
    np.testing.assert_array_equal(indices, [[4, 5, 6], [1, 2, 1], [0, 3, 7]])
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    # the weighted members are exactly the partition
    members = indices[weights > 0]
    np.testing.assert_array_equal(np.sort(members), np.arange(8))


def test_pad_balanced_groups_has_at_most_one_padding_per_group():
    groups = make_groups(POSITIONS[:250], 32, False, True, np.random.default_rng(0))
    indices, weights = pad_groups(groups)
    assert weights.sum() == 250
    assert np.all((1 - weights).sum(axis=1) <= 1)
    np.testing.assert_array_equal(np.sort(indices[weights > 0]), np.arange(250))
