"""Acquisition diagnostics: can this 4D-STEM acquisition support ptychography?

Plain functions of the acquisition's numbers (no Jupyter needed); :func:`diagnose` gathers them
into one :class:`Diagnostics` record. Conventions as in the rest of phaser: lengths in A, angles in
mrad, ``defocus`` numerically the Krivanek C10 (only its magnitude matters here).

Definitions used (each function's docstring says which):

- probe diameter ``d = 2 |defocus| alpha + 1.22 lambda / alpha``: the geometric shadow of the
  bright-field disc at the specimen plus the Airy first-zero diameter of the focused probe;
- linear oversampling ``d / step`` and areal oversampling ``(pi d^2 / 4) / step^2`` (Bunk et al.,
  Ultramicroscopy 108 (2008) 481; da Silva & Menzel, Opt. Express 23 (2015) 33812);
- the ptychographic sampling condition ``2 step dk < 1`` (Edo et al., Phys. Rev. A 87 (2013)
  053850), reported as the ratio ``1 / (2 step dk)``;
- the disc overlap parameter ``1 - step / d`` (Bunk et al. 2008).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phaser.physics.aberrations import parse_aberrations
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import real_space_sampling_A
from phaser.physics.probe import focused_probe

AIRY_FIRST_ZERO = 1.2196698912665045
"""First zero of the Airy pattern: radius ``0.61 lambda / alpha``, so diameter ``1.22 lambda / alpha``."""


class AcquisitionError(ValueError):
    """Numbers missing or invalid for a diagnosis; the message names the field and its source."""


@dataclass(frozen=True)
class Acquisition:
    """The numbers a diagnosis needs."""

    wavelength_A: float
    """Electron wavelength [A]."""
    conv_angle_mrad: float
    """Convergence semi-angle alpha [mrad]."""
    defocus_A: float
    """Defocus [A] (C10; the sign does not matter to any diagnostic)."""
    scan_step_A: float
    """Scan step [A]."""
    diff_step_mrad: float
    """Detector pixel size [mrad per pixel]."""
    pattern_shape: tuple[int, int]
    """Detector size (k_y, k_x) [px]."""
    scan_shape: tuple[int, int] | None = None
    """Raster scan (scan_y, scan_x) [positions], where known."""

    @classmethod
    def from_kv(cls, kv: float, **fields: Any) -> Acquisition:
        """The acquisition at ``kv`` [kV] (wavelength from :func:`electron_wavelength_A`)."""
        return cls(wavelength_A=electron_wavelength_A(kv), **fields)


# ---------------------------------------------------------------------------- scalar diagnostics


def detector_pixel_inv_A(wavelength_A: float, diff_step_mrad: float) -> float:
    """Reciprocal-space size ``dk = theta / lambda`` [1/A] of a detector pixel of ``diff_step_mrad`` [mrad]."""
    return diff_step_mrad * 1e-3 / wavelength_A


def sampling_ratio(scan_step_A: float, wavelength_A: float, diff_step_mrad: float) -> float:
    """The ptychographic sampling ratio ``1 / (2 step dk)`` [dimensionless]; >= 1 meets the condition.

    Edo et al., "Sampling in x-ray ptychography", Phys. Rev. A 87 (2013) 053850: a ptychographic
    data set is sufficiently sampled when the real-space scan step ``step`` [A] and the detector's
    reciprocal-space pixel ``dk`` [1/A] satisfy ``2 step dk < 1``, i.e. the scan step is at most half
    the real-space window ``1/dk`` the detector samples (per axis). Unlike single-shot CDI the
    probe need not be smaller than that window.
    """
    return 1.0 / (2.0 * scan_step_A * detector_pixel_inv_A(wavelength_A, diff_step_mrad))


def probe_diameter_A(wavelength_A: float, conv_angle_mrad: float, defocus_A: float) -> float:
    """Probe diameter [A]: ``2 |defocus| alpha + 1.22 lambda / alpha``.

    The first term is the geometric diameter of the bright-field disc's shadow at the specimen for a
    probe defocused by ``defocus`` [A] with convergence semi-angle ``alpha`` [mrad]; the second the
    Airy first-zero diameter of the in-focus, diffraction-limited probe (Born & Wolf, Principles of
    Optics, sec. 8.5.2). Their sum is a simple interpolation between the two limits.
    """
    alpha = conv_angle_mrad * 1e-3
    return 2.0 * abs(defocus_A) * alpha + AIRY_FIRST_ZERO * wavelength_A / alpha


def linear_oversampling(probe_diameter: float, scan_step_A: float) -> float:
    """Linear oversampling ``d / step`` [dimensionless]: probe diameter [A] over scan step [A].

    Bunk et al., Ultramicroscopy 108 (2008) 481 (probe size over step); da Silva & Menzel,
    Opt. Express 23 (2015) 33812 call it the linear oversampling.
    """
    return probe_diameter / scan_step_A


def areal_oversampling(probe_diameter: float, scan_step_A: float) -> float:
    """Areal oversampling ``(pi d^2 / 4) / step^2`` [dimensionless]: disc area [A^2] per scan cell [A^2].

    The number of probe positions that illuminate a point of a raster-scanned specimen on average
    (da Silva & Menzel, Opt. Express 23 (2015) 33812; Bunk et al. 2008 for the linear form).
    """
    return math.pi * probe_diameter**2 / 4.0 / scan_step_A**2


def disc_overlap(probe_diameter: float, scan_step_A: float) -> float:
    """Overlap parameter ``1 - step / d`` [dimensionless] of two discs of diameter ``d`` [A], 0 when apart.

    Bunk et al., "Influence of the overlap parameter on the convergence of the ptychographical
    iterative engine", Ultramicroscopy 108 (2008) 481.
    """
    return max(0.0, 1.0 - scan_step_A / probe_diameter)


def disc_area_overlap(probe_diameter: float, scan_step_A: float) -> float:
    """Fraction [dimensionless] of a disc's area [A^2] shared with the same disc shifted by ``step`` [A].

    Area of the lens of two circles of radius ``R`` at distance ``s``:
    ``2 R^2 acos(s / 2R) - (s / 2) sqrt(4 R^2 - s^2)``, over ``pi R^2``.
    """
    radius = probe_diameter / 2.0
    s = scan_step_A
    if s >= 2 * radius:
        return 0.0
    lens = 2 * radius**2 * math.acos(s / (2 * radius)) - s / 2 * math.sqrt(4 * radius**2 - s**2)
    return lens / (math.pi * radius**2)


def probe_pixel_A(wavelength_A: float, pattern_shape: tuple[int, int], diff_step_mrad: float) -> tuple[float, float]:
    """Real-space pixel (dy, dx) [A] of the probe grid: ``lambda / (N dk_mrad 1e-3)``.

    Fourier sampling: a detector of ``N`` pixels of ``dk`` spans ``N dk``; its inverse is the pixel.
    """
    return real_space_sampling_A(wavelength_A, pattern_shape, diff_step_mrad)


def bright_field_radius_px(conv_angle_mrad: float, diff_step_mrad: float) -> float:
    """Radius of the bright-field disc on the detector [px]: ``alpha / dk`` (both [mrad])."""
    return conv_angle_mrad / diff_step_mrad


def ronchigram_pixel_A(defocus_A: float, diff_step_mrad: float) -> float:
    """Specimen distance [A] that one detector pixel spans in the Ronchigram: ``|defocus| dk``.

    In the shadow image of a probe defocused by ``defocus`` [A], a ray at angle ``theta`` crosses the
    specimen ``|defocus| theta`` from the axis, so a detector pixel of ``dk`` [mrad] images
    ``|defocus| dk 1e-3`` [A] of specimen (geometric optics, independent of the camera length;
    Cowley, Ultramicroscopy 4 (1979) 413). Infinite at focus.
    """
    return abs(defocus_A) * diff_step_mrad * 1e-3 if defocus_A != 0 else math.inf


def ronchigram_magnification(defocus_A: float, camera_length_mm: float) -> float:
    """Shadow-image magnification ``L / |defocus|`` [dimensionless] for camera length ``L`` [mm]."""
    return camera_length_mm * 1e7 / abs(defocus_A) if defocus_A != 0 else math.inf


# ---------------------------------------------------------------------------- numeric overlap


def simulated_probe(acq: Acquisition, aberrations: list[Any] | None = None) -> np.ndarray:
    """The acquisition's probe ``(N, N)`` complex on its own grid, ``sum |probe|^2 = 1``.

    ``aberrations``: further entries in the plan syntax (``[{c3: 1e4}]``, [A]); the defocus is added.
    """
    parsed = parse_aberrations([{"c1": acq.defocus_A}, *(aberrations or [])])
    sampling = probe_pixel_A(acq.wavelength_A, acq.pattern_shape, acq.diff_step_mrad)
    return focused_probe(
        np, acq.pattern_shape, sampling, acq.wavelength_A, acq.conv_angle_mrad, parsed, dtype=np.float64
    )


def intensity_overlap(probe_intensity: np.ndarray, shift_px: tuple[float, float]) -> float:
    """Overlap ``sum I(r) I(r - s) / sum I(r)^2`` [dimensionless] of a probe intensity and its shifted copy.

    ``shift_px`` = ``s`` in pixels (y, x), sub-pixel allowed. For a uniform disc this is the shared
    area fraction (:func:`disc_area_overlap`). Computed as the Fourier transform of ``|F[I]|^2``
    evaluated at ``s`` on a grid padded to twice the size, so the probe does not wrap onto itself.
    """
    intensity = np.asarray(probe_intensity, dtype=np.float64)
    ny, nx = intensity.shape
    spectrum = np.abs(np.fft.fft2(intensity, s=(2 * ny, 2 * nx))) ** 2
    ky = np.fft.fftfreq(2 * ny)[:, None]
    kx = np.fft.fftfreq(2 * nx)[None, :]
    phase = 2 * np.pi * (ky * shift_px[0] + kx * shift_px[1])
    return float(np.sum(spectrum * np.cos(phase)) / np.sum(spectrum))


def illumination_map(
    probe_intensity: np.ndarray, positions_px: np.ndarray, object_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the probe intensity over all positions on the object grid [intensity per pixel].

    ``positions_px`` (P, 2): probe centres (y, x) [px]; the probe (N, N) is centred at ``N//2`` and
    placed at the nearest pixel. Without ``object_shape`` the grid just holds every probe and the
    positions are shifted so that the first pixel is 0. Returns ``(map, centres_px)``: the map and the
    probe centres on its grid.
    """
    positions = np.asarray(positions_px, dtype=np.float64)
    n_y, n_x = probe_intensity.shape
    corner = np.array([n_y // 2, n_x // 2])
    if object_shape is None:
        positions = positions - np.floor(positions.min(axis=0)) + corner
        extent = np.ceil(positions.max(axis=0)).astype(int) + np.array([n_y, n_x]) - corner
        object_shape = (int(extent[0]), int(extent[1]))
    total = np.zeros(object_shape, dtype=np.float64)
    for y, x in np.rint(positions).astype(int) - corner:
        total[max(y, 0) : y + n_y, max(x, 0) : x + n_x] += probe_intensity[
            max(-y, 0) : object_shape[0] - y, max(-x, 0) : object_shape[1] - x
        ]
    return total, positions


def scanned_interior_range(illumination: np.ndarray, centres_px: np.ndarray) -> tuple[float, float]:
    """Min and max of an illumination map over the scanned interior: the pixels within the
    bounding box of the probe centres (``centres_px`` (P, 2), [px])."""
    low = np.ceil(centres_px.min(axis=0) - 1e-9).astype(int)
    high = np.floor(centres_px.max(axis=0) + 1e-9).astype(int)
    interior = illumination[low[0] : high[0] + 1, low[1] : high[1] + 1]
    return float(interior.min()), float(interior.max())


def raster_positions_px(acq: Acquisition) -> np.ndarray:
    """Raster probe centres (P, 2) [px] of the acquisition (default 8 x 8 when its scan is unknown)."""
    from phaser.physics.scan import raster_positions_A

    pixel = probe_pixel_A(acq.wavelength_A, acq.pattern_shape, acq.diff_step_mrad)
    positions = raster_positions_A(acq.scan_shape or (8, 8), acq.scan_step_A)
    return positions / np.asarray(pixel)


def overlap_versus_step(acq: Acquisition, steps_A: np.ndarray, aberrations: list[Any] | None = None) -> np.ndarray:
    """:func:`intensity_overlap` [dimensionless] of the simulated probe for each step in ``steps_A`` [A] (along x)."""
    intensity = np.abs(simulated_probe(acq, aberrations)) ** 2
    pixel_x = probe_pixel_A(acq.wavelength_A, acq.pattern_shape, acq.diff_step_mrad)[1]
    return np.array([intensity_overlap(intensity, (0.0, step / pixel_x)) for step in np.asarray(steps_A)])


def scan_illumination(acq: Acquisition, aberrations: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`illumination_map` of the simulated probe (``sum |probe|^2 = 1``) over the acquisition's raster."""
    intensity = np.abs(simulated_probe(acq, aberrations)) ** 2
    return illumination_map(intensity, raster_positions_px(acq))


# ---------------------------------------------------------------------------- the whole diagnosis


@dataclass(frozen=True)
class Diagnostics:
    """Every diagnostic of one acquisition (units in the field docs)."""

    sampling_ratio: float
    """Ptychographic sampling ratio ``1 / (2 step dk)``; >= 1 meets Edo et al.'s condition."""
    probe_diameter_A: float
    """``2 |defocus| alpha + 1.22 lambda / alpha`` [A]."""
    linear_oversampling: float
    """Probe diameter / step."""
    areal_oversampling: float
    """Probe disc area / step^2."""
    probe_pixel_A: float
    """Real-space pixel of the probe grid [A] (the larger of y and x)."""
    probe_window_A: float
    """Real-space window the detector samples, ``1 / dk`` [A]."""
    pixels_across_probe: float
    """Probe diameter in probe-grid pixels."""
    bright_field_radius_px: float
    """Bright-field disc radius on the detector [px]."""
    ronchigram_pixel_A: float
    """Specimen distance per detector pixel in the Ronchigram [A/px] (inf at focus)."""
    disc_overlap: float
    """Bunk's ``1 - step / d`` for neighbouring positions."""
    intensity_overlap: float
    """Numeric ``sum I I_shifted / sum I^2`` of the simulated probe shifted by one step along x."""
    illumination_min: float
    """Least summed probe intensity over the scanned interior [fraction of one probe's total]."""
    illumination_max: float
    """Largest summed probe intensity over the scanned interior [fraction of one probe's total]."""

    def as_dict(self) -> dict[str, float]:
        """The numbers by name."""
        return asdict(self)

    def warnings(self) -> list[str]:
        """What in this acquisition is likely to hinder a reconstruction, one sentence each."""
        found = []
        if self.sampling_ratio < 1:
            found.append(f"sampling ratio {self.sampling_ratio:.2f} < 1: the scan step is too coarse for the detector")
        if self.linear_oversampling < 2:
            found.append(f"linear oversampling {self.linear_oversampling:.2f} < 2: little probe overlap")
        if self.probe_diameter_A > self.probe_window_A:
            found.append("the probe is wider than the real-space window 1/dk: it wraps around the probe grid")
        if self.bright_field_radius_px * 2 > 0.9 * self.probe_window_A / self.probe_pixel_A:
            found.append("the bright-field disc nearly fills the detector")
        return found


def diagnose(acq: Acquisition, aberrations: list[Any] | None = None) -> Diagnostics:
    """All diagnostics of ``acq``; the overlap and illumination from a simulated probe."""
    diameter = probe_diameter_A(acq.wavelength_A, acq.conv_angle_mrad, acq.defocus_A)
    pixel = probe_pixel_A(acq.wavelength_A, acq.pattern_shape, acq.diff_step_mrad)
    intensity = np.abs(simulated_probe(acq, aberrations)) ** 2
    illumination, centres = illumination_map(intensity, raster_positions_px(acq))
    low, high = scanned_interior_range(illumination, centres)
    return Diagnostics(
        sampling_ratio=sampling_ratio(acq.scan_step_A, acq.wavelength_A, acq.diff_step_mrad),
        probe_diameter_A=diameter,
        linear_oversampling=linear_oversampling(diameter, acq.scan_step_A),
        areal_oversampling=areal_oversampling(diameter, acq.scan_step_A),
        probe_pixel_A=max(pixel),
        probe_window_A=1.0 / detector_pixel_inv_A(acq.wavelength_A, acq.diff_step_mrad),
        pixels_across_probe=diameter / max(pixel),
        bright_field_radius_px=bright_field_radius_px(acq.conv_angle_mrad, acq.diff_step_mrad),
        ronchigram_pixel_A=ronchigram_pixel_A(acq.defocus_A, acq.diff_step_mrad),
        disc_overlap=disc_overlap(diameter, acq.scan_step_A),
        intensity_overlap=intensity_overlap(intensity, (0.0, acq.scan_step_A / pixel[1])),
        illumination_min=low,
        illumination_max=high,
    )


# ---------------------------------------------------------------------------- from plans and files


def acquisition_from_plan(plan: Any) -> Acquisition:
    """The acquisition a plan describes: its probe and scan hooks over the data file's metadata.

    Raises :class:`AcquisitionError` naming the missing field (and the data file it looked in).
    """
    from phaser.io.metadata import read_metadata

    meta = read_metadata(plan.raw_data)
    source = f"the plan or {meta.source}" if meta is not None else "the plan"
    probe = plan.init.probe.props if plan.init.probe is not None else None
    scan = plan.init.scan.props if plan.init.scan is not None else None
    step = getattr(scan, "step_size", None) or (meta.scan_step_A if meta else None)
    if isinstance(step, tuple):
        step = max(step)
    wavelength = plan.wavelength or (meta.wavelength_A if meta else None)
    kv = meta.kv if meta else None
    values = {
        "conv_angle_mrad": getattr(probe, "conv_angle", None),
        "scan_step_A": step,
        "diff_step_mrad": meta.diff_step_mrad if meta else None,
        "wavelength_A": wavelength or (electron_wavelength_A(kv) if kv else None),
    }
    missing = [name for name, value in values.items() if value is None]
    if missing or meta is None:
        raise AcquisitionError(f"{', '.join(missing) or 'pattern shape'}: not given in {source}")
    return Acquisition(
        defocus_A=float(getattr(probe, "defocus", 0.0)),
        pattern_shape=meta.pattern_shape,
        scan_shape=getattr(scan, "shape", None) or meta.scan_shape,
        **values,
    )


def acquisition_from_file(path: str | Path, **overrides: Any) -> Acquisition:
    """The acquisition recorded in an HDF5 data file (``phaser simulate`` output), ``overrides`` first.

    Reads the ``patterns`` attributes (``kv``, ``diff_step_mrad``, ``scan_step_A``, ``scan_shape``)
    and, where present, the ``truth`` attributes (``conv_angle_mrad``, ``defocus_A``,
    ``wavelength_A``). Raises :class:`AcquisitionError` naming the file and the missing fields.
    """
    import h5py

    path = Path(path)
    found: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            patterns = f["patterns"]
            found["pattern_shape"] = tuple(int(n) for n in patterns.shape[-2:])
            attrs = dict(patterns.attrs)
            if "truth" in f:
                attrs = {**dict(f["truth"].attrs), **attrs}
    except (OSError, KeyError) as exc:
        raise AcquisitionError(f"{path}: cannot read its patterns ({exc})") from None
    for name in ("conv_angle_mrad", "defocus_A", "wavelength_A", "diff_step_mrad", "scan_step_A"):
        if name in attrs:
            found[name] = float(attrs[name])
    if "wavelength_A" not in found and "kv" in attrs:
        found["wavelength_A"] = electron_wavelength_A(float(attrs["kv"]))
    if "scan_shape" in attrs:
        found["scan_shape"] = tuple(int(n) for n in attrs["scan_shape"])
    found.setdefault("defocus_A", 0.0)
    found.update(overrides)
    needed = ("wavelength_A", "conv_angle_mrad", "scan_step_A", "diff_step_mrad")
    missing = [name for name in needed if name not in found]
    if missing:
        raise AcquisitionError(f"{path}: {', '.join(missing)} not recorded; pass them as arguments")
    return Acquisition(**found)
