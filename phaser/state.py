"""The reconstruction state shared by the engines of a plan.

Positions are kept in A in the object frame (object pixel ``(0, 0)`` at coordinate 0, pixel ``j``
at ``j * sampling``), so they survive a change of pixel size between engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


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
    error_iterations: list[int] = field(default_factory=list)

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

    def record_error(self, error: float) -> None:
        """Append the error of the iteration just finished."""
        self.error_history.append(float(error))
        self.error_iterations.append(self.iteration)

    def copy_with(self, **changes: Any) -> ReconsState:
        """A shallow copy with fields replaced (history lists copied)."""
        changes.setdefault("error_history", list(self.error_history))
        changes.setdefault("error_iterations", list(self.error_iterations))
        return replace(self, **changes)
