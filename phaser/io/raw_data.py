"""The container every raw-data hook returns, and its consistency checks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


class RawDataError(ValueError):
    """Raw data that cannot be used as given; the message names the file or field."""


@dataclass(frozen=True)
class RawData:
    """Diffraction patterns plus the metadata a reconstruction needs.

    ``patterns`` is float32 ``(scan_y, scan_x, k_y, k_x)`` for a raster scan or ``(n, k_y, k_x)``,
    in electrons (after ``adu`` scaling), with the zero frequency at pixel ``(k_y//2, k_x//2)``
    (loaders that read uncentred data shift it on load). Metadata is ``None`` where unknown.
    """

    patterns: np.ndarray
    kv: float | None = None
    diff_step_mrad: float | None = None
    scan_shape: tuple[int, int] | None = None
    scan_step_A: float | None = None
    source: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """Detector shape ``(k_y, k_x)``."""
        return tuple(self.patterns.shape[-2:])  # type: ignore[return-value]

    @property
    def n_patterns(self) -> int:
        """Number of scan positions."""
        return int(np.prod(self.patterns.shape[:-2]))

    def flat_patterns(self) -> np.ndarray:
        """Patterns as ``(n, k_y, k_x)`` in scan order (fast axis last)."""
        return self.patterns.reshape(-1, *self.pattern_shape)

    def with_patterns(self, patterns: np.ndarray, **changes) -> RawData:
        """A copy with new patterns (and other fields changed)."""
        return replace(self, patterns=patterns, **changes)
