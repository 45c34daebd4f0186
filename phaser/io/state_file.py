"""The reconstruction output format: one HDF5 file per saved state, written atomically.

Layout: root attributes ``file_type = "phaser_state"``, ``format_version``, ``phaser_version``,
``kv``, ``wavelength_A``, ``sampling_A``, ``iteration`` (across engines), ``engine_index`` and
``engine_iteration`` (where in the plan the state stands: iterations of that engine done, for
resuming), ``scan_shape`` and ``plan`` (the resolved plan as YAML); datasets ``probe`` (M, N, N),
``object`` (S, Ny, Nx), ``slice_thicknesses_A``, ``positions_A`` (P, 2), ``initial_positions_A``, ``tilt_mrad``,
and the per-iteration records ``error_history`` (the common error, :mod:`phaser.engines.errors`),
``error_iterations``, ``loss_history`` (each engine's own noise-model loss), ``error_engines`` and
``iteration_seconds`` (format 1.1; a 1.0 file reads with the last three empty). A file is written
beside its final name and renamed, so a run interrupted while saving leaves the previous file intact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phaser import __version__
from phaser.backend import to_numpy
from phaser.state import ReconsState

FILE_TYPE = "phaser_state"
FORMAT_VERSION = "1.1"


class StateFileError(ValueError):
    """A state file that cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class StateHeader:
    """What a state file says about itself, read without its arrays."""

    n_positions: int
    probe_shape: tuple[int, int]
    """(N_y, N_x) pixels of the probe (the grid of the engine it was saved in)."""
    iteration: int
    """Iterations done, across engines."""
    engine_index: int | None
    """The engine the state was saved in (None in files written before it was recorded)."""
    engine_iteration: int | None
    """Iterations of that engine done (None where unknown)."""
    plan_yaml: str | None


def save_state(
    path: str | Path, state: ReconsState, plan_yaml: str | None = None, engine_iteration: int | None = None
) -> Path:
    """Write ``state`` to ``path`` (HDF5) atomically; returns the path.

    ``engine_iteration``: iterations of engine ``state.engine_index`` done, recorded for resuming.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        f.attrs.update(
            {
                "file_type": FILE_TYPE,
                "format_version": FORMAT_VERSION,
                "phaser_version": __version__,
                "kv": state.kv,
                "wavelength_A": state.wavelength_A,
                "sampling_A": np.asarray(state.sampling_A),
                "iteration": state.iteration,
                "engine_index": state.engine_index,
            }
        )
        if engine_iteration is not None:
            f.attrs["engine_iteration"] = engine_iteration
        if state.scan_shape is not None:
            f.attrs["scan_shape"] = np.asarray(state.scan_shape)
        if plan_yaml is not None:
            f.attrs["plan"] = plan_yaml
        f["probe"] = to_numpy(state.probe_modes)
        f["object"] = to_numpy(state.object_slices)
        f["slice_thicknesses_A"] = np.asarray(state.slice_thicknesses_A, np.float64)
        f["positions_A"] = to_numpy(state.positions_A)
        f["initial_positions_A"] = np.asarray(state.initial_positions_A)
        f["tilt_mrad"] = to_numpy(state.tilt_mrad)
        f["error_history"] = np.asarray(state.error_history, np.float64)
        f["error_iterations"] = np.asarray(state.error_iterations, np.int64)
        f["loss_history"] = np.asarray(state.loss_history, np.float64)
        f["error_engines"] = np.asarray(state.error_engines, np.int64)
        f["iteration_seconds"] = np.asarray(state.iteration_seconds, np.float64)
    os.replace(partial, path)
    return path


@contextmanager
def _state_file(path: Path) -> Iterator[h5py.File]:
    """``path`` opened for reading, checked to be a phaser state file with its main datasets; any
    problem (absent, not HDF5, truncated, another kind of file) is a :class:`StateFileError`."""
    if not path.is_file():
        raise StateFileError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("file_type") != FILE_TYPE:
                raise StateFileError(f"{path}: not a phaser state file (file_type {f.attrs.get('file_type')!r})")
            missing = [k for k in ("probe", "object", "positions_A") if k not in f]
            if missing:
                raise StateFileError(f"{path}: missing dataset(s) {', '.join(missing)}")
            yield f
    except OSError as exc:
        raise StateFileError(f"{path}: cannot be read as HDF5 (truncated or not HDF5?): {exc}") from None


def load_state(path: str | Path) -> ReconsState:
    """Read a state written by :func:`save_state` (arrays as numpy)."""
    with _state_file(Path(path)) as f:

        def read(name: str, default: Any = None) -> Any:
            return f[name][()] if name in f else default

        positions = read("positions_A")
        scan_shape = f.attrs.get("scan_shape")
        return ReconsState(
            kv=float(f.attrs["kv"]),
            wavelength_A=float(f.attrs["wavelength_A"]),
            sampling_A=tuple(float(v) for v in f.attrs["sampling_A"]),  # type: ignore[arg-type]
            probe_modes=read("probe"),
            object_slices=read("object"),
            slice_thicknesses_A=read("slice_thicknesses_A", np.zeros(1)),
            positions_A=positions,
            initial_positions_A=read("initial_positions_A", positions.copy()),
            tilt_mrad=read("tilt_mrad", np.zeros_like(positions)),
            scan_shape=tuple(int(v) for v in scan_shape) if scan_shape is not None else None,
            iteration=int(f.attrs.get("iteration", 0)),
            engine_index=int(f.attrs.get("engine_index", 0)),
            error_history=[float(v) for v in read("error_history", [])],
            error_iterations=[int(v) for v in read("error_iterations", [])],
            **_histories(read),
        )


def _histories(read: Any) -> dict[str, list[Any]]:
    """The per-iteration records added in later files; an older file gets empty lists (not
    guesses), and a list of another length than ``error_history`` is refused."""
    errors = read("error_history", [])
    out: dict[str, list[Any]] = {
        "loss_history": [float(v) for v in read("loss_history", [])],
        "error_engines": [int(v) for v in read("error_engines", [])],
        "iteration_seconds": [float(v) for v in read("iteration_seconds", [])],
    }
    for name, values in out.items():
        if values and len(values) != len(errors):
            raise StateFileError(f"{name}: {len(values)} entries but error_history has {len(errors)}")
    return out


def read_state_header(path: str | Path) -> StateHeader:
    """The shapes and progress recorded in a state file, without reading its arrays."""
    with _state_file(Path(path)) as f:
        plan = f.attrs.get("plan")
        engine_index, engine_iteration = f.attrs.get("engine_index"), f.attrs.get("engine_iteration")
        return StateHeader(
            n_positions=int(f["positions_A"].shape[0]),
            probe_shape=tuple(int(n) for n in f["probe"].shape[-2:]),  # type: ignore[arg-type]
            iteration=int(f.attrs.get("iteration", 0)),
            engine_index=int(engine_index) if engine_index is not None else None,
            engine_iteration=int(engine_iteration) if engine_iteration is not None else None,
            plan_yaml=plan.decode() if isinstance(plan, bytes) else plan,
        )


def read_plan_yaml(path: str | Path) -> str | None:
    """The resolved plan stored in a state file, if any."""
    with h5py.File(path, "r") as f:
        value = f.attrs.get("plan")
        return value.decode() if isinstance(value, bytes) else value
