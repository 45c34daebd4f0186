"""Bringing the shared state (and the patterns) to an engine's settings before it runs.

Simulation grid (``sim_shape``, ``resize_method``)
    The engine simulates on a window of ``N' x N'`` real-space pixels. Without ``sim_shape`` it keeps
    the grid the previous engine used (the original phaser does the same); the patterns given to
    :func:`prepare_for_engine` are always the data as loaded, resized here in one step.

    * ``pad_crop`` keeps the detector pixel ``dk = diff_step / wavelength`` and the real-space window
      ``1 / dk``: the detector grows or shrinks to ``N'`` pixels (a wider or narrower angular range),
      so the real-space pixel becomes ``wavelength / (N' diff_step) = dx N / N'``. The patterns are
      zero-padded (nothing recorded beyond the old edge) or cropped (counts beyond the new edge are
      lost); the probe is Fourier-interpolated (its spectrum padded or cropped), so its far field is
      unchanged on the pixels both detectors share.
    * ``resample`` keeps the real-space pixel ``dx`` and so the angular range ``+-1 / (2 dx)``: the
      detector pixel becomes ``diff_step N / N'`` and the window ``N' dx`` grows or shrinks. The
      counts of each detector pixel are shared among the new pixels in proportion to the solid angle
      they overlap (the total per pattern is kept); the probe is zero-padded or cropped in real
      space, whose far field is the band-limited interpolation of the old one.

    Each probe mode keeps its intensity ``sum |probe|^2`` (electrons per pattern): the incident dose
    does not depend on the detector.

Object
    When the pixel changes, every slice is interpolated linearly onto the new pixel: the amplitude
    from ``|O|``, the phase from the interpolated complex ``O`` (no phase unwrapping, and a pure phase
    object stays pure phase). Object pixel ``(0, 0)`` stays at coordinate 0, so the positions [A] are
    unchanged. The object is then padded with vacuum (``1 + 0j``) wherever a probe window plus
    ``obj_pad_px`` would leave it; padding before the first pixel moves the frame's origin, and the
    positions (current and initial) are shifted by the same amount.

Slices
    The log-transmission of the old slices is a piecewise-constant depth profile; it is stretched to
    the new total thickness and integrated over each new slice. The projected log-transmission (the
    projected potential) is kept exactly; one slice is spread over many in proportion to their
    thickness, many are merged into one as their product.

Probe modes
    Added modes are polynomials (y, x, y^2, xy, ...) times the first mode, Gram-Schmidt
    orthogonalised against every existing mode and each other; from one mode the first keeps
    ``base_mode_power`` of the intensity, from several the existing ones keep that share together.
    Removing modes keeps the strongest, rescaled to the same total intensity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from phaser.backend import to_numpy
from phaser.initial import object_shape_for
from phaser.plan.schema import slice_thicknesses
from phaser.state import ReconsState

# Relative difference below which two pixel sizes count as equal (float drift from N/N' * N'/N).
_SAME_PIXEL_RTOL = 1e-9


# --- probe modes ------------------------------------------------------------------------------


def _polynomial_candidates(base: np.ndarray) -> list[np.ndarray]:
    """``y^a x^b * base`` for ``a + b = 1..7``, coordinates from the centre and width of ``|base|^2``."""
    intensity = np.abs(base) ** 2
    total = float(np.sum(intensity))
    yy, xx = np.meshgrid(
        np.arange(base.shape[-2], dtype=np.float64), np.arange(base.shape[-1], dtype=np.float64), indexing="ij"
    )
    coords = []
    for grid in (yy, xx):
        centred = grid - np.sum(grid * intensity) / total
        width = math.sqrt(float(np.sum(centred**2 * intensity)) / total) or 1.0  # O(1) values up to degree 7
        coords.append(centred / width)
    orders = [(d - k, k) for d in range(1, 8) for k in range(d + 1)]
    return [coords[0] ** py * coords[1] ** px * base for py, px in orders]


def added_modes(existing: np.ndarray, n_new: int) -> np.ndarray:
    """``n_new`` unit-norm modes orthogonal to every mode of ``existing`` ``(M, N, N)`` and to each other.

    They are polynomial multiples of ``existing[0]`` (see :func:`_polynomial_candidates`),
    orthogonalised by Gram-Schmidt (applied twice, for round-off); candidates that the existing modes
    already span are skipped.
    """
    flat = existing.reshape(existing.shape[0], -1).astype(np.complex128)
    u, s, _ = np.linalg.svd(flat.T, full_matrices=False)
    basis = [u[:, i] for i in range(len(s)) if s[i] > 1e-10 * s[0]]
    accepted: list[np.ndarray] = []
    for candidate in _polynomial_candidates(existing[0].astype(np.complex128)):
        if len(accepted) == n_new:
            break
        vector = candidate.ravel() / np.linalg.norm(candidate)
        for _ in range(2):
            for b in basis:
                vector = vector - b * np.vdot(b, vector)
        norm = np.linalg.norm(vector)
        if norm > 1e-6:
            basis.append(vector / norm)
            accepted.append(vector / norm)
    if len(accepted) < n_new:
        raise ValueError(f"probe_modes: could only build {len(accepted)} of {n_new} new orthogonal modes")
    return np.stack(accepted).reshape(n_new, *existing.shape[1:])


def orthogonal_modes(base: np.ndarray, n_modes: int, base_mode_power: float) -> np.ndarray:
    """``n_modes`` orthogonal modes: ``base`` then polynomial multiples of it (:func:`added_modes`).

    The first keeps ``base_mode_power`` of the total intensity; the others share the rest equally.
    """
    total = float(np.sum(np.abs(base) ** 2))
    if n_modes == 1:
        return base[None].copy()
    extra = added_modes(base[None], n_modes - 1) * math.sqrt(total * (1 - base_mode_power) / (n_modes - 1))
    first = base * math.sqrt(base_mode_power)
    return np.concatenate([first[None], extra.astype(np.result_type(base, extra))])


def resize_modes(probe: np.ndarray, n_modes: int, base_mode_power: float) -> np.ndarray:
    """``probe`` ``(M, N, N)`` with ``n_modes`` modes and the same total intensity."""
    current = probe.shape[0]
    if n_modes == current:
        return probe
    total = float(np.sum(np.abs(probe) ** 2))
    if n_modes < current:
        order = np.argsort(-np.sum(np.abs(probe) ** 2, axis=(-2, -1)))
        kept = probe[np.sort(order[:n_modes])]
        return kept * np.sqrt(total / np.sum(np.abs(kept) ** 2))
    n_new = n_modes - current
    extra = added_modes(probe, n_new) * math.sqrt(total * (1 - base_mode_power) / n_new)
    kept = probe * math.sqrt(base_mode_power)
    return np.concatenate([kept, extra]).astype(probe.dtype)


# --- slices -------------------------------------------------------------------------------------


def _depth_bounds(thicknesses: list[float]) -> np.ndarray:
    """Slice boundaries in depth scaled to ``[0, 1]`` (equal slices when the total is 0)."""
    widths = np.asarray(thicknesses, dtype=np.float64)
    widths = widths if widths.sum() > 0 else np.ones(len(widths))
    bounds = np.concatenate([[0.0], np.cumsum(widths) / widths.sum()])
    bounds[-1] = 1.0
    return bounds


def depth_weights(old: list[float], new: list[float]) -> np.ndarray:
    """``(S_new, S_old)``: the fraction of each old slice's depth that falls in each new slice.

    Both stacks are scaled to the same total depth, so every column sums to 1; an old slice of zero
    thickness goes whole to the new slice at its depth.
    """
    b_old, b_new = _depth_bounds(old), _depth_bounds(new)
    lo = np.maximum(b_new[:-1, None], b_old[None, :-1])
    hi = np.minimum(b_new[1:, None], b_old[None, 1:])
    widths = b_old[1:] - b_old[:-1]
    weights = np.clip(hi - lo, 0.0, None) / np.where(widths > 0, widths, 1.0)
    for k in np.flatnonzero(widths <= 0):
        weights[:, k] = 0.0
        weights[min(np.searchsorted(b_new, b_old[k], side="right") - 1, len(new) - 1), k] = 1.0
    return weights


def reslice(obj: np.ndarray, old: list[float], new: list[float]) -> np.ndarray:
    """``obj`` ``(S, Ny, Nx)`` re-sliced to thicknesses ``new`` [A] (see the module docstring).

    Each slice's phase is taken in (-pi, pi]; the product of the slices (the projected
    transmission) is unchanged.
    """
    if len(old) == len(new) and np.allclose(old, new):
        return obj
    weights = depth_weights(old, new)
    if weights.shape[0] == weights.shape[1] and np.allclose(weights, np.eye(len(new))):
        return obj
    log_obj = np.log(np.where(obj == 0, 1e-12, obj))
    return np.exp(np.tensordot(weights, log_obj, axes=(1, 0))).astype(obj.dtype)


# --- simulation grid --------------------------------------------------------------------------


def next_grid(shape: tuple[int, int], sampling_A: np.ndarray, engine: Any) -> tuple[tuple[int, int], np.ndarray]:
    """The ``(shape, pixel [A])`` an engine simulates on, from the grid before it."""
    if engine.sim_shape is None or tuple(engine.sim_shape) == tuple(shape):
        return tuple(shape), np.asarray(sampling_A, dtype=np.float64)  # type: ignore[return-value]
    new_shape = tuple(int(n) for n in engine.sim_shape)
    if engine.resize_method == "pad_crop":  # same window: the pixel scales as N / N'
        return new_shape, np.asarray(sampling_A, np.float64) * np.asarray(shape) / np.asarray(new_shape)
    return new_shape, np.asarray(sampling_A, dtype=np.float64)  # type: ignore[return-value]


def data_sampling_A(state: ReconsState, plan: Any, pattern_shape: tuple[int, int]) -> np.ndarray:
    """Real-space pixel [A] of the data's own grid, from the state's grid and the engines before it.

    Every grid of the plan is the data's pixel times a factor fixed by the shapes, so the engines
    ``plan.engines[:state.engine_index]`` are replayed from the data's shape.
    """
    shape, factor = tuple(pattern_shape), np.ones(2)
    for engine in plan.engines[: state.engine_index]:
        shape, factor = next_grid(shape, factor, engine)
    if tuple(shape) != tuple(state.probe_shape):
        raise ValueError(
            f"the probe is {tuple(state.probe_shape)} but the patterns {tuple(pattern_shape)} and the "
            f"sim_shape of engines[:{state.engine_index}] give {tuple(shape)}"
        )
    return np.asarray(state.sampling_A, dtype=np.float64) / factor


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME_PIXEL_RTOL * abs(b)


def centred_pad_crop(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-pad or crop the last two axes to ``shape``, pixel ``N//2`` going to ``N'//2``."""
    out = np.zeros((*array.shape[:-2], *shape), dtype=array.dtype)
    src, dst = [], []
    for n_old, n_new in zip(array.shape[-2:], shape, strict=True):
        offset = n_new // 2 - n_old // 2
        start, stop = max(0, -offset), min(n_old, n_new - offset)
        src.append(slice(start, stop))
        dst.append(slice(start + offset, stop + offset))
    out[(..., *dst)] = array[(..., *src)]
    return out


def rebin_matrix(n_old: int, n_new: int, ratio: float) -> np.ndarray:
    """``(n_new, n_old)`` share of each old detector pixel falling in each new one.

    Pixel ``i`` of the old grid spans ``[i - n_old//2 - 1/2, i - n_old//2 + 1/2]`` old pixels from
    the zero frequency; a new pixel is ``ratio`` old pixels wide. ``ratio = 1`` is a centred pad/crop.
    """
    i = np.arange(n_old) - n_old // 2
    j = (np.arange(n_new) - n_new // 2) * ratio
    lo = np.maximum(j[:, None] - ratio / 2, i[None, :] - 0.5)
    hi = np.minimum(j[:, None] + ratio / 2, i[None, :] + 0.5)
    return np.clip(hi - lo, 0.0, None)


def resize_patterns(
    patterns: np.ndarray, data_sampling: np.ndarray, shape: tuple[int, int], sampling_A: np.ndarray
) -> np.ndarray:
    """Centred patterns ``(P, N, N)`` [electrons] of the data grid moved to the detector of a grid.

    The detector pixel of a grid is ``1 / (N dx)``; with the data's pixel it is a centred pad/crop,
    otherwise the counts are shared by overlapping solid angle (:func:`rebin_matrix`).
    """
    old_shape = patterns.shape[-2:]
    # new detector pixel / old one
    ratios = [(old_shape[a] * data_sampling[a]) / (shape[a] * sampling_A[a]) for a in range(2)]
    if all(_same(r, 1.0) for r in ratios):
        return patterns if tuple(old_shape) == tuple(shape) else centred_pad_crop(patterns, shape)
    rows = rebin_matrix(old_shape[0], shape[0], ratios[0]).astype(patterns.dtype)
    cols = rebin_matrix(old_shape[1], shape[1], ratios[1]).astype(patterns.dtype)
    return np.matmul(np.matmul(rows, patterns), cols.T)


def resize_probe(probe: np.ndarray, shape: tuple[int, int], same_window: bool) -> np.ndarray:
    """Probe modes ``(M, N, N)`` centred at ``N//2`` moved to ``shape``, each keeping ``sum |probe|^2``.

    ``same_window``: Fourier interpolation (``pad_crop``, new pixel); else a real-space pad/crop
    (``resample``, same pixel).
    """
    if same_window:
        axes = (-2, -1)
        spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe, axes=axes), norm="ortho"), axes=axes)
        spectrum = centred_pad_crop(spectrum, shape)
        resized = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spectrum, axes=axes), norm="ortho"), axes=axes)
    else:
        resized = centred_pad_crop(probe, shape)
    before = np.sum(np.abs(probe) ** 2, axis=(-2, -1), keepdims=True)
    after = np.sum(np.abs(resized) ** 2, axis=(-2, -1), keepdims=True)
    return (resized * np.sqrt(before / np.where(after > 0, after, 1.0))).astype(probe.dtype)


# --- object -------------------------------------------------------------------------------------


def resample_object(obj: np.ndarray, old_sampling: np.ndarray, new_sampling: np.ndarray) -> np.ndarray:
    """Slices ``(S, Ny, Nx)`` on pixel ``old_sampling`` [A] interpolated onto ``new_sampling`` [A].

    Pixel ``(0, 0)`` stays at coordinate 0 and the new grid spans the old one's pixels. Linear
    interpolation of ``|O|`` gives the amplitude, of ``O`` the phase; vacuum outside.
    """
    scale = np.asarray(new_sampling, np.float64) / np.asarray(old_sampling, np.float64)
    # the last new pixel stays inside the old grid (no blending with vacuum); cover_positions pads
    shape = [math.floor((obj.shape[-2 + a] - 1) / scale[a] + 1e-9) + 1 for a in range(2)]
    coords = np.meshgrid(np.arange(shape[0]) * scale[0], np.arange(shape[1]) * scale[1], indexing="ij")

    def interp(image: np.ndarray, vacuum: float) -> np.ndarray:
        return ndimage.map_coordinates(image, coords, order=1, mode="grid-constant", cval=vacuum)

    out = np.empty((obj.shape[0], *shape), dtype=obj.dtype)
    for s, layer in enumerate(obj):
        amplitude = interp(np.abs(layer).astype(np.float64), 1.0)
        combined = interp(layer.real.astype(np.float64), 1.0) + 1j * interp(layer.imag.astype(np.float64), 0.0)
        out[s] = amplitude * np.exp(1j * np.angle(combined))
    return out


def cover_positions(
    obj: np.ndarray, positions_px: np.ndarray, window: tuple[int, int], pad_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """``obj`` padded with vacuum so every ``window`` at ``positions_px`` has ``pad_px`` around it.

    Returns the object and the pixels ``(2,)`` added before the first row/column (the shift of the
    frame's origin). Only grows, as :func:`phaser.initial.object_shape_for` sizes the first object.
    """
    half = np.asarray(window, np.float64) / 2 + pad_px
    before = np.maximum(0, np.ceil(half - positions_px.min(axis=0) - 1e-6)).astype(int)
    needed = np.asarray(object_shape_for(positions_px + before, window, pad_px))
    after = np.maximum(0, needed - np.asarray(obj.shape[-2:]))
    if not before.any() and not after.any():
        return obj, before
    widths = ((0, 0), (before[0], after[0]), (before[1], after[1]))
    return np.pad(obj, widths, constant_values=1.0), before


# --- the step before each engine ----------------------------------------------------------------


def prepare_for_engine(
    state: ReconsState, engine: Any, plan: Any, patterns: np.ndarray, rng: np.random.Generator
) -> tuple[ReconsState, np.ndarray]:
    """``state`` and ``patterns`` brought to the engine's grid, probe modes and slices.

    Parameters
    ----------
    state
        The state after the previous engine; ``state.engine_index`` is this engine's index.
    engine, plan
        This engine's settings and the plan (``plan.engines`` gives the grids before it,
        ``plan.slices`` the slices when the engine names none).
    patterns
        ``(P, N, N)`` [electrons] as loaded, zero frequency at ``N//2``: always the data, never a
        previous engine's resized copy.
    rng
        The run's random source (unused: every step here is deterministic).

    Returns
    -------
    The state (the same object when nothing changes) and the patterns on the engine's detector
    ``(P, N', N')`` (``patterns`` itself when the grid is the data's).
    """
    pattern_shape = tuple(patterns.shape[-2:])
    data_sampling = data_sampling_A(state, plan, pattern_shape)  # type: ignore[arg-type]
    old_shape, old_sampling = tuple(state.probe_shape), np.asarray(state.sampling_A, dtype=np.float64)
    shape, sampling = next_grid(old_shape, old_sampling, engine)  # type: ignore[arg-type]
    engine_patterns = resize_patterns(patterns, data_sampling, shape, sampling)
    changes: dict[str, Any] = {}

    probe = to_numpy(state.probe_modes)
    new_probe = probe
    if shape != old_shape:
        new_probe = resize_probe(probe, shape, same_window=engine.resize_method == "pad_crop")
        changes["sampling_A"] = (float(sampling[0]), float(sampling[1]))
    new_probe = resize_modes(new_probe, engine.probe_modes, engine.base_mode_power)
    if new_probe is not probe:
        changes["probe_modes"] = new_probe

    obj = to_numpy(state.object_slices)
    slices = engine.slices if engine.slices is not None else plan.slices
    thicknesses = slice_thicknesses(slices)
    new_obj = reslice(obj, [float(t) for t in state.slice_thicknesses_A], thicknesses)
    if new_obj is not obj:
        changes["slice_thicknesses_A"] = np.asarray(thicknesses, dtype=np.float64)
    if not all(_same(sampling[a], old_sampling[a]) for a in range(2)):
        new_obj = resample_object(new_obj, old_sampling, sampling)
    positions = np.asarray(to_numpy(state.positions_A), dtype=np.float64)
    new_obj, before = cover_positions(new_obj, positions / sampling, shape, engine.obj_pad_px)
    if before.any():
        shift = before * sampling
        changes["positions_A"] = positions + shift
        changes["initial_positions_A"] = np.asarray(state.initial_positions_A, dtype=np.float64) + shift
    if new_obj is not obj:
        changes["object_slices"] = new_obj
    return (state.copy_with(**changes) if changes else state), engine_patterns
