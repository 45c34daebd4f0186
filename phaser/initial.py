"""Initialiser hooks: the starting probe, scan positions and object of a reconstruction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from phaser.hooks import HookProps
from phaser.io.metadata import read_npy_file_header
from phaser.io.raw_data import RawDataError
from phaser.physics.aberrations import parse_aberrations
from phaser.physics.probe import focused_probe
from phaser.physics.scan import raster_positions_A


@dataclass(frozen=True)
class InitContext:
    """What an initialiser may use: the grid, the wavelength, the data's scale and the rng."""

    wavelength_A: float
    sampling_A: tuple[float, float]
    probe_shape: tuple[int, int]
    mean_pattern_intensity: float
    rng: np.random.Generator
    scan_shape: tuple[int, int] | None = None
    scan_step_A: float | None = None
    object_shape: tuple[int, int, int] | None = None


class FocusedProbeProps(HookProps):
    """A probe focused by a round aperture with aberrations."""

    conv_angle: float = Field(gt=0, description="convergence semi-angle [mrad]")
    defocus: float = Field(0.0, description="defocus [A], numerically C10 (positive = overfocus)")
    aberrations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="[{c3: 1e4}, {a1: {mag: 20, angle: 30}}, {n: 3, m: 0, val: 1e4}, ...] [A, deg]",
    )

    @field_validator("aberrations")
    @classmethod
    def _parse(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parse_aberrations(value)  # raises ValueError naming the bad entry
        return value


def focused(ctx: InitContext, props: FocusedProbeProps) -> np.ndarray:
    """Focused probe ``(N, N)`` complex, scaled to the mean electrons per pattern."""
    aberrations = parse_aberrations([{"c1": props.defocus}, *props.aberrations])
    return focused_probe(
        np,
        ctx.probe_shape,
        ctx.sampling_A,
        ctx.wavelength_A,
        props.conv_angle,
        aberrations,
        total_intensity=ctx.mean_pattern_intensity,
        dtype=np.float64,
    )


class RasterScanProps(HookProps):
    """A raster scan, fast axis x; shape and step default to the raw data's metadata."""

    shape: tuple[PositiveInt, PositiveInt] | None = Field(None, description="(scan_y, scan_x) positions")
    step_size: PositiveFloat | tuple[PositiveFloat, PositiveFloat] | None = Field(
        None, description="step [A], or (y, x)"
    )
    rotation: float | None = Field(None, description="scan rotation, counter-clockwise [deg]")
    affine: tuple[tuple[float, float], tuple[float, float]] | None = Field(
        None, description="2x2 distortion matrix acting on (y, x), applied before the rotation"
    )


def raster(ctx: InitContext, props: RasterScanProps) -> np.ndarray:
    """Raster positions ``(P, 2)`` [A], zero mean."""
    shape = props.shape or ctx.scan_shape
    step = props.step_size if props.step_size is not None else ctx.scan_step_A
    if shape is None:
        raise ValueError("init.scan.shape: not given, and the raw data carry no scan shape")
    if step is None:
        raise ValueError("init.scan.step_size: not given, and the raw data carry no scan step")
    affine = np.asarray(props.affine) if props.affine is not None else None
    return raster_positions_A(tuple(shape), step, props.rotation or 0.0, affine)


class RandomObjectProps(HookProps):
    """Unit amplitude with a small random phase."""

    sigma: float = Field(1e-6, ge=0, description="standard deviation of the random phase [rad]")


def random_object(ctx: InitContext, props: RandomObjectProps) -> np.ndarray:
    """Object slices ``(S, Ny, Nx)`` complex: ``exp(i * N(0, sigma))``."""
    assert ctx.object_shape is not None
    phase = ctx.rng.normal(0.0, props.sigma, size=ctx.object_shape) if props.sigma > 0 else np.zeros(ctx.object_shape)
    return np.exp(1j * phase)


def object_shape_for(positions_px: np.ndarray, probe_shape: tuple[int, int], pad_px: float) -> tuple[int, int]:
    """Object extent [px] covering every probe window plus ``pad_px`` on each side, for positions
    already in the object frame (:func:`place_positions`); also the extent that
    :func:`phaser.engines.resample.cover_positions` pads to, so the first engine finds nothing to pad."""
    needed = np.ceil(positions_px.max(axis=0) + np.asarray(probe_shape) / 2 + pad_px - 1e-6).astype(int) + 1
    return (int(needed[0]), int(needed[1]))


def place_positions(
    positions_A: np.ndarray, sampling_A: tuple[float, float], probe_shape: tuple[int, int], pad_px: float
) -> np.ndarray:
    """Shift zero-mean positions [A] into the object frame, the first ``N/2 + pad_px + 1/2`` pixels in.

    The half pixel puts the scan on the object grid where the original phaser package puts it (its
    probe lands half a pixel past the centre of its window), so the same plan on the same data
    gives the same object array in both. The frame's origin is otherwise free, but where atom
    columns fall on the pixels can matter: on the abTEM SrTiO3 set this placement scores 0.002-0.009
    higher at 60 iterations, on our own simulation of that specimen 0.0004-0.0017 lower
    (``benchmarks/README.md``, "Same step, same groups").
    """
    sampling = np.asarray(sampling_A)
    origin = positions_A.min(axis=0) - (np.asarray(probe_shape) / 2 + pad_px + 0.5) * sampling
    return positions_A - origin


class GlobalTiltProps(HookProps):
    """One tilt for every position."""

    tilt: tuple[float, float] = Field(description="(t_y, t_x) of the beam against the specimen [mrad]")


def global_tilt(ctx: InitContext, n_positions: int, props: GlobalTiltProps) -> np.ndarray:
    """Tilts ``(P, 2)`` [mrad], all equal."""
    return np.broadcast_to(np.asarray(props.tilt, dtype=np.float64), (n_positions, 2)).copy()


class CustomTiltProps(HookProps):
    """Per-position tilts from a ``.npy`` file of shape ``(P, 2)`` or ``(scan_y, scan_x, 2)`` [mrad]."""

    path: Path = Field(description="the .npy file")


def custom_tilt(ctx: InitContext, n_positions: int, props: CustomTiltProps) -> np.ndarray:
    """Tilts ``(P, 2)`` [mrad] read from ``props.path``; the count must match the positions."""
    tilt = read_tilt_file(props.path, n_positions)
    if not np.all(np.isfinite(tilt)):
        raise RawDataError(f"init.tilt.path: {props.path} holds NaN or infinite tilts")
    return tilt


def read_tilt_file(path: Path, n_positions: int) -> np.ndarray:
    """The ``(P, 2)`` tilts [mrad] in the .npy file ``path``; P must be ``n_positions``.

    The file is checked as data files are (missing, empty, not .npy, pickled, truncated, wrong
    shape) before it is read, every message naming the field and the file.
    """
    check_tilt_file(path, n_positions)
    try:
        tilt = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RawDataError(f"init.tilt.path: {path} is truncated or damaged: {exc}") from None
    return np.asarray(tilt, dtype=np.float64).reshape(-1, 2)


def check_tilt_file(path: Path, n_positions: int | None) -> tuple[int, ...]:
    """The shape of the tilts in ``path`` from its header; refuses what :func:`read_tilt_file` would."""
    try:
        header = read_npy_file_header(Path(path), "tilt file")
        shape = header.shape
        if header.dtype.kind not in "biuf":
            raise RawDataError(f"{path}: tilts must be real numbers [mrad], got dtype {header.dtype}")
        if len(shape) not in (2, 3) or shape[-1] != 2 or math.prod(shape) == 0:
            raise RawDataError(f"{path} holds shape {shape}; expected (P, 2) or (scan_y, scan_x, 2) tilts [mrad]")
        n_tilts = math.prod(shape[:-1])
        if n_positions is not None and n_tilts != n_positions:
            raise RawDataError(
                f"{path} holds {n_tilts} tilts (shape {shape}) but the scan has {n_positions} positions; "
                f"expected ({n_positions}, 2) or (scan_y, scan_x, 2)"
            )
    except RawDataError as exc:
        raise RawDataError(f"init.tilt.path: {exc}") from None
    return shape
