"""The data behind the widgets: pure models, testable without a browser or a kernel.

A model holds the arrays and the user's choices as traitlets; every image a view shows is a method
of the model, so changing a trait and calling the method is all a test needs. Views
(:mod:`phaser.widgets.views`) only draw what these return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from traitlets import Bool, Float, HasTraits, Int, Unicode, validate

from phaser.diagnostics import Acquisition, AcquisitionError, Diagnostics, acquisition_from_file, diagnose


class RawDataModel(HasTraits):
    """A 4D-STEM dataset ``(scan_y, scan_x, k_y, k_x)`` [electrons], zero frequency at ``N//2``.

    Traits: the scan position shown (``scan_y``, ``scan_x``), the virtual detectors' radii [mrad]
    (bright field ``0..bf_outer_mrad``, annular dark field ``adf_inner_mrad..adf_outer_mrad``) and
    ``log_scale`` for the diffraction patterns.
    """

    scan_y = Int(0)
    scan_x = Int(0)
    bf_outer_mrad = Float(20.0)
    adf_inner_mrad = Float(30.0)
    adf_outer_mrad = Float(1e9)
    log_scale = Bool(True)
    source = Unicode("")

    def __init__(self, patterns: np.ndarray, diff_step_mrad: float, source: str = "", **traits: Any) -> None:
        if patterns.ndim != 4:
            raise ValueError(f"{source or 'patterns'}: expected (scan_y, scan_x, k_y, k_x), got shape {patterns.shape}")
        self.patterns = np.asarray(patterns, dtype=np.float32)
        self.diff_step_mrad = float(diff_step_mrad)
        super().__init__(source=source, **traits)

    @classmethod
    def from_file(cls, path: str | Path, **manual_props: Any) -> RawDataModel:
        """The dataset at ``path`` as the ``manual`` raw-data hook reads it (``manual_props``: its
        parameters, e.g. ``diff_step`` [mrad] or ``scan_shape``). Raises ``ValueError`` naming the file."""
        from phaser.io.manual import ManualProps, load_manual

        raw = load_manual(ManualProps(path=Path(path), **manual_props))
        if raw.diff_step_mrad is None:
            raise ValueError(f"{path}: no detector pixel size recorded; pass diff_step=... [mrad]")
        if raw.patterns.ndim != 4:
            raise ValueError(f"{path}: no raster scan shape recorded; pass scan_shape=(ny, nx)")
        return cls(raw.patterns, raw.diff_step_mrad, source=str(path))

    @property
    def scan_shape(self) -> tuple[int, int]:
        """(scan_y, scan_x) [positions]."""
        return self.patterns.shape[0], self.patterns.shape[1]

    @validate("scan_y", "scan_x")
    def _inside_scan(self, proposal: Any) -> int:
        axis = 0 if proposal["trait"].name == "scan_y" else 1
        return int(np.clip(proposal["value"], 0, self.patterns.shape[axis] - 1))

    def pick(self, fraction_y: float, fraction_x: float) -> None:
        """Choose the scan position under a click at fractions (0..1) of a virtual image's height and width."""
        self.scan_y = int(fraction_y * self.scan_shape[0])
        self.scan_x = int(fraction_x * self.scan_shape[1])

    def scattering_angle_mrad(self) -> np.ndarray:
        """Scattering angle [mrad] of every detector pixel, from the centre pixel ``N//2``."""
        ny, nx = self.patterns.shape[-2:]
        ky = (np.arange(ny) - ny // 2)[:, None]
        kx = (np.arange(nx) - nx // 2)[None, :]
        return np.hypot(ky, kx) * self.diff_step_mrad

    def detector_mask(self, inner_mrad: float, outer_mrad: float) -> np.ndarray:
        """Pixels with ``inner_mrad <= angle < outer_mrad`` (bool, (k_y, k_x))."""
        angle = self.scattering_angle_mrad()
        return (angle >= inner_mrad) & (angle < outer_mrad)

    def virtual_image(self, inner_mrad: float, outer_mrad: float) -> np.ndarray:
        """Electrons [e] on an annular detector ``inner..outer`` [mrad] at each scan position (scan_y, scan_x)."""
        mask = self.detector_mask(inner_mrad, outer_mrad)
        return np.tensordot(self.patterns, mask.astype(np.float32), axes=([2, 3], [0, 1]))

    def bright_field(self) -> np.ndarray:
        """Virtual bright-field image [e]: the detector inside ``bf_outer_mrad``."""
        return self.virtual_image(0.0, self.bf_outer_mrad)

    def annular_dark_field(self) -> np.ndarray:
        """Virtual annular dark-field image [e]: ``adf_inner_mrad..adf_outer_mrad``."""
        return self.virtual_image(self.adf_inner_mrad, self.adf_outer_mrad)

    def scaled(self, pattern: np.ndarray) -> np.ndarray:
        """``log10(1 + counts)`` when ``log_scale``, else the counts [e]; negatives clipped to 0."""
        counts = np.clip(pattern, 0.0, None)
        return np.log10(1.0 + counts) if self.log_scale else counts

    def cbed(self) -> np.ndarray:
        """The pattern at (``scan_y``, ``scan_x``), scaled."""
        return self.scaled(self.patterns[self.scan_y, self.scan_x])

    def pacbed(self) -> np.ndarray:
        """The position-averaged pattern [e], scaled."""
        return self.scaled(self.patterns.mean(axis=(0, 1)))


class ReconstructionModel(HasTraits):
    """A saved reconstruction state; traits choose the object slice and the probe mode shown."""

    slice_index = Int(0)
    probe_mode = Int(0)
    source = Unicode("")

    def __init__(self, state: Any, source: str = "", **traits: Any) -> None:
        self.state = state
        super().__init__(source=source, **traits)

    @classmethod
    def from_file(cls, path: str | Path) -> ReconstructionModel:
        """The state file at ``path``; raises ``StateFileError`` (a ``ValueError``) naming it."""
        from phaser.io.state_file import load_state

        return cls(load_state(path), source=str(path))

    @property
    def n_slices(self) -> int:
        """Object slices."""
        return int(self.state.object_slices.shape[0])

    @property
    def n_modes(self) -> int:
        """Probe modes."""
        return int(self.state.probe_modes.shape[0])

    @validate("slice_index")
    def _valid_slice(self, proposal: Any) -> int:
        return int(np.clip(proposal["value"], 0, self.n_slices - 1))

    @validate("probe_mode")
    def _valid_mode(self, proposal: Any) -> int:
        return int(np.clip(proposal["value"], 0, self.n_modes - 1))

    def probe_powers(self) -> np.ndarray:
        """Each mode's share of the total probe intensity (M,), summing to 1."""
        power = np.sum(np.abs(self.state.probe_modes) ** 2, axis=(-2, -1))
        return power / power.sum()

    def probe_real(self) -> np.ndarray:
        """Amplitude ``|probe|`` [sqrt(e) per pixel] of the chosen mode in real space."""
        return np.abs(self.state.probe_modes[self.probe_mode])

    def probe_reciprocal(self) -> np.ndarray:
        """Amplitude of the chosen mode's far field (orthonormal FFT, zero frequency centred)."""
        far_field = np.fft.fft2(self.state.probe_modes[self.probe_mode], norm="ortho")
        return np.abs(np.fft.fftshift(far_field))

    def object_phase(self) -> np.ndarray:
        """Phase [rad] of the chosen slice's transmission."""
        return np.angle(self.state.object_slices[self.slice_index])

    def object_amplitude(self) -> np.ndarray:
        """Amplitude [dimensionless] of the chosen slice's transmission."""
        return np.abs(self.state.object_slices[self.slice_index])

    def summed_phase(self) -> np.ndarray:
        """Phase [rad] summed over the slices (the projected phase of a weak object)."""
        return np.angle(self.state.object_slices).sum(axis=0)

    def error_history(self) -> tuple[np.ndarray, np.ndarray]:
        """(iterations, errors): the noise model's loss per pattern at each recorded iteration."""
        errors = np.asarray(self.state.error_history, dtype=np.float64)
        iterations = np.asarray(self.state.error_iterations, dtype=np.int64)
        if iterations.size != errors.size:
            iterations = np.arange(1, errors.size + 1)
        return iterations, errors


def diagnostics_for(
    path: str | Path | None = None, acquisition: Acquisition | None = None, **overrides: Any
) -> tuple[Diagnostics | None, str]:
    """Diagnostics of ``acquisition`` (or the one recorded in the data file ``path`` with ``overrides``).

    Returns ``(diagnostics, "")`` or ``(None, message)`` naming the file and what is missing.
    """
    try:
        acq = acquisition or acquisition_from_file(path, **overrides)  # type: ignore[arg-type]
        return diagnose(acq), ""
    except (AcquisitionError, ValueError, TypeError) as exc:
        return None, f"No acquisition diagnostics: {exc}"
