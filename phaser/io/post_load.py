"""Post-load hooks: transforms of :class:`RawData` applied after loading, before initialisation.

Each is called as ``hook(raw, rng, props)`` and returns new ``RawData`` (the input is left
untouched). ``rng`` is the run's ``numpy.random.Generator``; only ``poisson`` draws from it.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import (
    AliasChoices,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from phaser.hooks import HookProps
from phaser.io.raw_data import RawData, RawDataError

logger = logging.getLogger(__name__)


class CropProps(HookProps):
    """Parameters of :func:`crop_patterns`; give ``shape``, ``scan_crop`` or both."""

    shape: tuple[PositiveInt, PositiveInt] | None = None
    """Detector size (k_y, k_x) in pixels to keep, centred on the zero-frequency pixel."""
    scan_crop: tuple[int | None, int | None, int | None, int | None] | None = None
    """Scan window [y0, y1, x0, x1] in positions, Python slice bounds; raster data only."""

    @model_validator(mode="after")
    def _something_to_crop(self) -> CropProps:
        if self.shape is None and self.scan_crop is None:
            raise ValueError("crop needs `shape` (detector) and/or `scan_crop` (scan)")
        return self


class BinProps(HookProps):
    """Parameters of :func:`bin_patterns` (``bin`` is the original plan format's name for ``factor``)."""

    factor: PositiveInt = Field(validation_alias=AliasChoices("factor", "bin"))
    """Detector pixels summed into one along each axis (dimensionless)."""


class ScaleProps(HookProps):
    """Parameters of :func:`scale_patterns`."""

    scale: PositiveFloat
    """Factor the patterns are multiplied by (dimensionless)."""


class OffsetProps(HookProps):
    """Parameters of :func:`offset_patterns`."""

    offset: float
    """Value subtracted from every pixel (electrons); results below 0 are clipped to 0."""


class CropDataProps(HookProps):
    """Parameters of :func:`crop_data` (the original plan format's scan crop)."""

    crop: tuple[int | None, int | None, int | None, int | None]
    """Scan window [y0, y1, x0, x1] in positions, Python slice bounds."""


class PoissonProps(HookProps):
    """Parameters of :func:`add_poisson_noise`; give ``dose`` or ``scale``, not both."""

    dose: PositiveFloat | None = None
    """Mean electrons per pattern after scaling (e-/pattern); sets the scale."""
    scale: PositiveFloat | None = None
    """Factor applied before sampling (electrons per pattern unit); None and no dose means 1."""
    gaussian: NonNegativeFloat | None = None
    """Standard deviation of Gaussian read-out noise added after sampling (electrons)."""

    @model_validator(mode="after")
    def _dose_or_scale(self) -> PoissonProps:
        if self.dose is not None and self.scale is not None:
            raise ValueError("poisson takes `dose` or `scale`, not both")
        return self


def crop_patterns(raw: RawData, rng: np.random.Generator, props: CropProps) -> RawData:
    """Crop the detector to a centred ``shape`` and/or the raster scan to ``scan_crop``."""
    patterns, scan_shape = raw.patterns, raw.scan_shape
    if props.scan_crop is not None:
        if patterns.ndim != 4:
            raise RawDataError(
                f"{_name(raw)}: scan_crop needs raster patterns (scan_y, scan_x, k_y, k_x), got shape {patterns.shape}"
            )
        y0, y1, x0, x1 = props.scan_crop
        patterns = patterns[y0:y1, x0:x1]
        if 0 in patterns.shape[:2]:
            raise RawDataError(
                f"{_name(raw)}: scan_crop {list(props.scan_crop)} leaves no positions of scan {raw.patterns.shape[:2]}"
            )
        scan_shape = tuple(patterns.shape[:2])
    if props.shape is not None:
        patterns = _crop_detector(patterns, props.shape, raw)
    return raw.with_patterns(np.ascontiguousarray(patterns), scan_shape=scan_shape)


def _crop_detector(patterns: np.ndarray, shape: tuple[int, int], raw: RawData) -> np.ndarray:
    """The centred ``shape`` window; pixel (k//2) stays the zero frequency."""
    (old_y, old_x), (new_y, new_x) = patterns.shape[-2:], shape
    if new_y > old_y or new_x > old_x:
        raise RawDataError(f"{_name(raw)}: cannot crop detector {(old_y, old_x)} to larger {tuple(shape)}")
    y0, x0 = old_y // 2 - new_y // 2, old_x // 2 - new_x // 2
    return patterns[..., y0 : y0 + new_y, x0 : x0 + new_x]


def bin_patterns(raw: RawData, rng: np.random.Generator, props: BinProps) -> RawData:
    """Sum ``factor`` x ``factor`` detector pixels into one; ``diff_step`` grows by ``factor``."""
    factor = props.factor
    k_y, k_x = raw.pattern_shape
    if k_y % factor or k_x % factor:
        raise RawDataError(f"{_name(raw)}: detector shape {(k_y, k_x)} is not divisible by bin factor {factor}")
    lead = raw.patterns.shape[:-2]
    blocks = raw.patterns.reshape(*lead, k_y // factor, factor, k_x // factor, factor)
    binned = blocks.sum(axis=(-3, -1), dtype=np.float32)
    diff_step = raw.diff_step_mrad * factor if raw.diff_step_mrad is not None else None
    return raw.with_patterns(binned, diff_step_mrad=diff_step)


def scale_patterns(raw: RawData, rng: np.random.Generator, props: ScaleProps) -> RawData:
    """Multiply every pattern by ``scale``."""
    return raw.with_patterns(raw.patterns * np.float32(props.scale))


def offset_patterns(raw: RawData, rng: np.random.Generator, props: OffsetProps) -> RawData:
    """Subtract ``offset`` from every pixel, clipping at 0 (logs how many pixels were clipped)."""
    shifted = raw.patterns - np.float32(props.offset)
    n_clipped = np.count_nonzero(shifted < 0)
    np.maximum(shifted, 0, out=shifted)
    logger.info("offset %g: clipped %d of %d pixels to 0", props.offset, n_clipped, shifted.size)
    return raw.with_patterns(shifted)


def add_poisson_noise(raw: RawData, rng: np.random.Generator, props: PoissonProps) -> RawData:
    """Add Poisson noise: scale the patterns (to mean ``dose`` or by ``scale``), sample counts."""
    n_negative = np.count_nonzero(raw.patterns < 0)
    if n_negative:
        raise RawDataError(f"{_name(raw)}: poisson needs non-negative patterns, {n_negative} < 0")
    if props.dose is not None:
        mean_total = float(raw.flat_patterns().sum(axis=(-2, -1), dtype=np.float64).mean())
        if mean_total <= 0:
            raise RawDataError(f"{_name(raw)}: cannot scale empty patterns to dose {props.dose}")
        factor = props.dose / mean_total
    else:
        factor = props.scale if props.scale is not None else 1.0
    noisy = rng.poisson(raw.patterns.astype(np.float64) * factor).astype(np.float32)
    if props.gaussian:
        noisy = np.maximum(noisy + rng.normal(0.0, props.gaussian, noisy.shape), 0).astype(np.float32)
    mean_dose = float(noisy.sum(dtype=np.float64)) / raw.n_patterns
    logger.info("poisson: scaled by %.4g, mean %.4g e-/pattern", factor, mean_dose)
    return raw.with_patterns(noisy)


def crop_data(raw: RawData, rng: np.random.Generator, props: CropDataProps) -> RawData:
    """Crop the raster scan to ``crop`` = [y0, y1, x0, x1] (the original format's hook)."""
    return crop_patterns(raw, rng, CropProps(scan_crop=props.crop))


def _name(raw: RawData) -> str:
    """The data's source file for messages."""
    return str(raw.source) if raw.source is not None else "raw data"


POST_LOAD_HOOKS: dict[str, tuple[str, type[HookProps]]] = {
    "crop": ("phaser.io.post_load:crop_patterns", CropProps),
    "crop_data": ("phaser.io.post_load:crop_data", CropDataProps),
    "bin": ("phaser.io.post_load:bin_patterns", BinProps),
    "scale": ("phaser.io.post_load:scale_patterns", ScaleProps),
    "offset": ("phaser.io.post_load:offset_patterns", OffsetProps),
    "poisson": ("phaser.io.post_load:add_poisson_noise", PoissonProps),
}
"""Plan name -> (``module:function``, props class), ready for :func:`phaser.hooks.register`."""
