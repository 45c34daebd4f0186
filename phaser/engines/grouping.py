"""Splitting scan positions into groups (mini-batches), reshuffled each iteration.

Groups are returned as a rectangular index array ``(n_groups, group_size)`` plus weights (1 for a
real member, 0 for padding), so that a jit-compiled loop over groups sees one fixed shape.
"""

from __future__ import annotations

import math

import numpy as np


def _balanced_sizes(n_items: int, group_size: int) -> list[int]:
    n_groups = max(1, math.ceil(n_items / group_size))
    base, extra = divmod(n_items, n_groups)
    return [base + (1 if i < extra else 0) for i in range(n_groups)]


def sparse_groups(n_positions: int, group_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random groups spread over the whole scan (a fresh permutation each call)."""
    order = rng.permutation(n_positions)
    sizes = _balanced_sizes(n_positions, group_size)
    return np.split(order, np.cumsum(sizes)[:-1])


def compact_groups(positions: np.ndarray, group_size: int) -> list[np.ndarray]:
    """Spatially compact groups by recursive bisection along the longer extent (balanced sizes)."""
    n_groups = len(_balanced_sizes(len(positions), group_size))

    def split(indices: np.ndarray, parts: int) -> list[np.ndarray]:
        if parts == 1:
            return [indices]
        pts = positions[indices]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        order = indices[np.argsort(pts[:, axis], kind="stable")]
        left_parts = parts // 2
        cut = round(len(indices) * left_parts / parts)
        return split(order[:cut], left_parts) + split(order[cut:], parts - left_parts)

    return split(np.arange(len(positions)), n_groups)


def make_groups(
    positions: np.ndarray,
    group_size: int,
    compact: bool,
    shuffle: bool,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Groups for one iteration: compact or sparse, with the group order shuffled if asked."""
    if compact:
        groups = compact_groups(positions, group_size)
    elif shuffle:
        groups = sparse_groups(len(positions), group_size, rng)
    else:
        groups = np.array_split(np.arange(len(positions)), len(_balanced_sizes(len(positions), group_size)))
    if shuffle and len(groups) > 1:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    return groups


def pad_groups(groups: list[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rectangular ``(indices, weights)``; short groups repeat their first member with weight 0.

    The width is rounded up to a ``multiple`` (the number of devices a group is split over).
    """
    width = -(-max(len(g) for g in groups) // multiple) * multiple
    indices = np.zeros((len(groups), width), dtype=np.int32)
    weights = np.zeros((len(groups), width), dtype=np.float32)
    for i, group in enumerate(groups):
        indices[i, : len(group)] = group
        indices[i, len(group) :] = group[0]
        weights[i, : len(group)] = 1.0
    return indices, weights
