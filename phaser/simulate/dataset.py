"""Simulated 4D-STEM datasets from a known object, with the project's physics functions.

The probe is :func:`phaser.physics.probe.focused_probe` with ``defocus_A`` as C10, the forward model
:func:`phaser.physics.multislice.forward_intensity` without a bandwidth limit, and the object frame
has pixel ``(0, 0)`` at coordinate ``(0, 0)`` A with the scan centred in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phaser.physics.aberrations import Aberration, aberration_from_name
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import real_space_sampling_A
from phaser.physics.multislice import forward_intensity
from phaser.physics.probe import focused_probe
from phaser.physics.propagation import fresnel_propagator
from phaser.physics.scan import raster_positions_A
from phaser.simulate.objects import gaussian_atom_phase, transmission

# Extra object pixels beyond half a pattern on every side of the outermost probe position.
EDGE_PAD_PX = 4


@dataclass(frozen=True)
class SimulatedDataset:
    """A simulated 4D-STEM dataset and the truth it came from.

    Attributes
    ----------
    patterns
        float32 ``(scan_y, scan_x, k_y, k_x)`` [electrons], zero frequency at ``(k_y//2, k_x//2)``.
    probe_modes
        complex64 ``(M, N, N)`` real-space probe modes, centred at pixel ``(N//2, N//2)``;
        ``sum |probe_modes|^2`` is the dose per pattern (1 when noiseless).
    object
        complex64 ``(S, Ny, Nx)`` transmission of each slice.
    positions_A
        ``(n, 2)`` true probe positions ``(y, x)`` [A] in the object frame, jitter included.
    nominal_positions_A
        ``(n, 2)`` raster positions [A] in the object frame, without jitter.
    sampling_A
        Real-space pixel size ``(dy, dx)`` [A] of the probe and the object.
    dose_per_pattern
        Mean electrons per pattern, or ``None`` for noiseless patterns of total intensity 1.
    """

    patterns: np.ndarray
    probe_modes: np.ndarray
    object: np.ndarray
    positions_A: np.ndarray
    nominal_positions_A: np.ndarray
    sampling_A: tuple[float, float]
    wavelength_A: float
    kv: float
    diff_step_mrad: float
    scan_shape: tuple[int, int]
    scan_step_A: float
    slice_thickness_A: float
    conv_angle_mrad: float
    defocus_A: float
    dose_per_pattern: float | None = None
    scan_rotation_deg: float = 0.0

    @property
    def object_phase(self) -> np.ndarray:
        """Phase [rad] of each object slice, ``(S, Ny, Nx)``."""
        return np.angle(self.object)

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """Detector shape ``(k_y, k_x)`` [pixels]."""
        return tuple(self.patterns.shape[-2:])  # type: ignore[return-value]


def required_object_shape(
    centred_positions_A: np.ndarray,
    pattern_shape: tuple[int, int],
    sampling_A: tuple[float, float],
) -> tuple[int, int]:
    """Smallest object shape [px] holding zero-centred positions [A] with the simulation's margins.

    Every probe window stays at least ``EDGE_PAD_PX`` inside the object when the positions are
    centred by :func:`centre_in_object` (at least half a pattern + 4 px of object on every side).
    """
    half_extent = np.abs(np.asarray(centred_positions_A)).max(axis=0) / np.asarray(sampling_A)
    return tuple(  # type: ignore[return-value]
        2 * (math.ceil(half_extent[axis]) + pattern_shape[axis] // 2 + EDGE_PAD_PX) for axis in range(2)
    )


def centre_in_object(
    centred_positions_A: np.ndarray, object_shape: tuple[int, int], sampling_A: tuple[float, float]
) -> np.ndarray:
    """Zero-centred positions [A] moved to the object frame, centred on pixel ``(Ny//2, Nx//2)``."""
    centre = np.array([object_shape[0] // 2 * sampling_A[0], object_shape[1] // 2 * sampling_A[1]])
    return np.asarray(centred_positions_A, dtype=np.float64) + centre


def _check_inside(positions_px: np.ndarray, object_shape: tuple[int, int], pattern_shape: tuple[int, int]) -> None:
    """Raise if a probe window at ``positions_px`` would leave the object."""
    top_left = np.round(positions_px) - np.array([pattern_shape[0] // 2, pattern_shape[1] // 2])
    bottom_right = top_left + np.array(pattern_shape)
    if (top_left < 0).any() or (bottom_right > np.array(object_shape)).any():
        raise ValueError(
            f"object of shape {object_shape} px is too small for this scan and a "
            f"{pattern_shape} pattern: use required_object_shape() (or object_phase=None)"
        )


def incoherent_probe_modes(
    probe: np.ndarray,
    weights: list[float],
    rng: np.random.Generator,
    total_intensity: float = 1.0,
) -> np.ndarray:
    """``len(weights)`` orthogonal probe modes ``(M, N, N)`` from one coherent probe.

    Mode 0 is ``probe``; mode ``k`` starts as ``probe`` times a smooth random phase (correlation
    length ~N/8 px, ~1.5 rad rms), cut back to the probe's aperture in reciprocal space (a real
    partially coherent probe passes the same condenser aperture); the modes are orthogonalised by
    QR over flattened pixels and scaled so that mode ``k`` carries
    ``weights[k] / sum(weights) * total_intensity``.
    """
    weights_arr = np.asarray(weights, dtype=np.float64)
    if weights_arr.ndim != 1 or weights_arr.size == 0 or (weights_arr <= 0).any():
        raise ValueError(f"probe mode weights must be positive numbers, at least one: {weights}")
    shape = probe.shape[-2:]
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    low_pass = np.exp(-(fy**2 + fx**2) * (shape[0] / 8) ** 2 * 2 * math.pi**2)
    modes = [probe.astype(np.complex128)]
    spectrum = np.abs(np.fft.fft2(modes[0]))
    support = spectrum > 1e-6 * spectrum.max()
    for _ in range(1, weights_arr.size):
        smooth = np.fft.ifft2(np.fft.fft2(rng.normal(size=shape)) * low_pass).real
        smooth *= 1.5 / max(float(smooth.std()), 1e-12)
        modes.append(np.fft.ifft2(np.fft.fft2(modes[0] * np.exp(1j * smooth)) * support))
    flat = np.stack([m.ravel() for m in modes], axis=1)  # (N*N, M)
    q, r = np.linalg.qr(flat)
    diag = np.diag(r)
    q = q * (diag / np.abs(diag))  # unit-phase columns: mode 0 keeps the probe's own phase
    scale = np.sqrt(weights_arr / weights_arr.sum() * total_intensity)
    return (q * scale).T.reshape(-1, *shape)


def _slice_propagators(
    n_slices: int,
    shape: tuple[int, int],
    sampling_A: tuple[float, float],
    wavelength_A: float,
    slice_thickness_A: float,
) -> np.ndarray:
    """``(S-1, N, N)`` unmasked Fresnel propagators over ``slice_thickness_A`` [A]."""
    prop = fresnel_propagator(np, shape, sampling_A, wavelength_A, slice_thickness_A, bwlim_frac=None, dtype=np.float64)
    return np.broadcast_to(prop, (n_slices - 1, *shape)).copy()


def simulate_dataset(
    *,
    kv: float,
    conv_angle_mrad: float,
    defocus_A: float,
    diff_step_mrad: float,
    scan_step_A: float,
    aberrations: list[Aberration] | None = None,
    pattern_shape: tuple[int, int] = (32, 32),
    scan_shape: tuple[int, int] = (16, 16),
    scan_rotation_deg: float = 0.0,
    object_phase: np.ndarray | None = None,
    n_slices: int | None = None,
    slice_thickness_A: float = 10.0,
    probe_modes_weights: list[float] | None = None,
    dose_per_pattern: float | None = None,
    position_jitter_A: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
) -> SimulatedDataset:
    """Simulate a raster-scan 4D-STEM dataset of a known object.

    Parameters
    ----------
    kv
        Accelerating voltage [kV].
    conv_angle_mrad
        Probe semi-convergence angle [mrad].
    defocus_A
        C10 [A] of the probe (the ``c1`` aberration; positive = overfocus, see
        :mod:`phaser.physics.aberrations`).
    diff_step_mrad
        Detector pixel size [mrad/px]; fixes the real-space sampling
        ``wavelength / (N * diff_step)`` [A].
    scan_step_A
        Raster step [A].
    aberrations
        Further probe aberrations, added to ``defocus_A``.
    pattern_shape
        Detector (and probe) shape ``(k_y, k_x)`` [px].
    scan_shape
        Raster shape ``(scan_y, scan_x)``, fast axis x.
    scan_rotation_deg
        Counter-clockwise scan rotation [deg] (:func:`phaser.physics.scan.raster_positions_A`).
    object_phase
        Phase [rad] ``(S, Ny, Nx)`` (or ``(Ny, Nx)``) of a pure phase object, the scan centred on
        pixel ``(Ny//2, Nx//2)``; it must hold the scan (:func:`required_object_shape`). ``None``:
        :func:`gaussian_atom_phase` atoms on the smallest object that holds the scan.
    n_slices
        Slices of the generated object (default 1); must equal ``S`` if ``object_phase`` is given.
    slice_thickness_A
        Distance between slices [A] (unused for one slice).
    probe_modes_weights
        Relative powers of incoherent probe modes (:func:`incoherent_probe_modes`); ``None``: one
        coherent mode.
    dose_per_pattern
        Mean electrons per pattern, with Poisson noise; ``None``: noiseless patterns whose total
        intensity is 1 (the probe is normalised to ``dose_per_pattern`` or 1).
    position_jitter_A
        Standard deviation [A] of Gaussian errors added to the true positions.
    seed
        Seed of every random choice (atoms' slices, jitter, probe modes, noise); each uses its own
        stream, so e.g. the noiseless and noisy datasets of one seed share object and positions.
    batch_size
        Positions simulated at once (bounds memory).
    """
    if dose_per_pattern is not None and not dose_per_pattern > 0:
        raise ValueError(f"dose_per_pattern must be positive or None, got {dose_per_pattern}")
    rng_object, rng_jitter, rng_modes, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    wavelength = electron_wavelength_A(kv)
    sampling = real_space_sampling_A(wavelength, pattern_shape, diff_step_mrad)

    nominal = raster_positions_A(scan_shape, scan_step_A, scan_rotation_deg)
    true = nominal + rng_jitter.normal(scale=position_jitter_A, size=nominal.shape)
    if object_phase is None:
        extent = np.concatenate([nominal, true])
        object_shape = required_object_shape(extent, pattern_shape, sampling)
        object_phase = gaussian_atom_phase(object_shape, sampling, n_slices=n_slices or 1, rng=rng_object)
    else:
        object_phase = np.asarray(object_phase, dtype=np.float64)
        object_phase = object_phase[None] if object_phase.ndim == 2 else object_phase
        if n_slices is not None and n_slices != object_phase.shape[0]:
            raise ValueError(f"n_slices={n_slices} but object_phase has {object_phase.shape[0]} slices")
        object_shape = object_phase.shape[-2:]
    obj = transmission(object_phase)
    nominal = centre_in_object(nominal, object_shape, sampling)
    true = centre_in_object(true, object_shape, sampling)
    positions_px = true / np.asarray(sampling)
    _check_inside(positions_px, object_shape, pattern_shape)

    total = 1.0 if dose_per_pattern is None else float(dose_per_pattern)
    probe_aberrations = [aberration_from_name("c1", defocus_A), *(aberrations or [])]
    probe = focused_probe(
        np,
        pattern_shape,
        sampling,
        wavelength,
        conv_angle_mrad,
        probe_aberrations,
        total_intensity=total,
        dtype=np.float64,
    )
    modes = incoherent_probe_modes(probe, probe_modes_weights or [1.0], rng_modes, total)
    props = _slice_propagators(obj.shape[0], pattern_shape, sampling, wavelength, slice_thickness_A)

    obj128 = obj.astype(np.complex128)
    batches = [
        forward_intensity(np, modes, obj128, positions_px[i : i + batch_size], props)
        for i in range(0, len(positions_px), batch_size)
    ]
    patterns = np.fft.fftshift(np.concatenate(batches), axes=(-2, -1))
    if dose_per_pattern is not None:
        patterns = rng_noise.poisson(np.clip(patterns, 0.0, None))
    patterns = patterns.astype(np.float32).reshape(*scan_shape, *pattern_shape)

    return SimulatedDataset(
        patterns=patterns,
        probe_modes=modes.astype(np.complex64),
        object=obj,
        positions_A=true,
        nominal_positions_A=nominal,
        sampling_A=tuple(float(s) for s in sampling),  # type: ignore[arg-type]
        wavelength_A=wavelength,
        kv=float(kv),
        diff_step_mrad=float(diff_step_mrad),
        scan_shape=tuple(int(n) for n in scan_shape),  # type: ignore[arg-type]
        scan_step_A=float(scan_step_A),
        slice_thickness_A=float(slice_thickness_A),
        conv_angle_mrad=float(conv_angle_mrad),
        defocus_A=float(defocus_A),
        dose_per_pattern=None if dose_per_pattern is None else float(dose_per_pattern),
        scan_rotation_deg=float(scan_rotation_deg),
    )
