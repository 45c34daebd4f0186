"""The reconstruction state shared by the engines of a plan.

Positions are kept in A in the object frame (object pixel ``(0, 0)`` at coordinate 0, pixel ``j``
at ``j * sampling``), so they survive a change of pixel size between engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

HISTORY_FIELDS = ("error_history", "error_iterations", "loss_history", "error_engines", "iteration_seconds")
"""The per-iteration records of a state, one entry per iteration in each."""


@dataclass
class ReconsState:
    """Probe modes, object slices, scan positions and tilts, plus the progress of the run.

    Arrays live on the run's backend except the history lists and ``initial_positions_A``.
    """

    kv: float
    wavelength_A: float
    sampling_A: tuple[float, float]
    probe_modes: Any  # (M, N, N) complex, sum |probe|^2 = electrons per pattern
    object_slices: Any  # (S, Ny, Nx) complex transmission
    slice_thicknesses_A: np.ndarray  # (S,)
    positions_A: Any  # (P, 2) float, (y, x)
    initial_positions_A: np.ndarray  # (P, 2)
    tilt_mrad: Any  # (P, 2) float
    scan_shape: tuple[int, int] | None = None
    iteration: int = 0
    engine_index: int = 0
    error_history: list[float] = field(default_factory=list)
    """The common error of each iteration (:mod:`phaser.engines.errors`): one curve across engines."""
    error_iterations: list[int] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    """The engine's own noise-model loss per pattern, each iteration (not comparable across models)."""
    error_engines: list[int] = field(default_factory=list)
    """The index of the engine that ran each iteration."""
    iteration_seconds: list[float] = field(default_factory=list)
    """The wall time of each iteration [s] (setup and compilation land in an engine's first)."""

    @property
    def n_positions(self) -> int:
        return int(self.positions_A.shape[0])

    @property
    def n_slices(self) -> int:
        return int(self.object_slices.shape[0])

    @property
    def probe_shape(self) -> tuple[int, int]:
        return tuple(self.probe_modes.shape[-2:])  # type: ignore[return-value]

    def positions_px(self, xp: Any) -> Any:
        """Positions in object pixels ``(P, 2)``."""
        return xp.asarray(self.positions_A) / xp.asarray(self.sampling_A, dtype=self.positions_A.dtype)

    def record_iteration(self, error: float, loss: float | None = None, seconds: float = 0.0) -> None:
        """Append the records of the iteration just finished (``state.iteration`` already counted).

        ``loss`` defaults to ``error`` (a caller without a noise model of its own).
        """
        self.error_history.append(float(error))
        self.error_iterations.append(self.iteration)
        self.loss_history.append(float(error if loss is None else loss))
        self.error_engines.append(self.engine_index)
        self.iteration_seconds.append(float(seconds))

    def copy_with(self, **changes: Any) -> ReconsState:
        """A shallow copy with fields replaced (history lists copied)."""
        for name in HISTORY_FIELDS:
            changes.setdefault(name, list(getattr(self, name)))
        return replace(self, **changes)
