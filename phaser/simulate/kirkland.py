"""Kirkland's electron scattering factors and the potentials of single neutral atoms.

Parameters from E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed. (Springer
2010), Appendix C, for Z = 1..103 (``kirkland_params.txt`` beside this module). With ``q`` the
spatial frequency [1/A] (``q = 2 sin(theta) / lambda``, no 2 pi):

    f_e(q)   = sum_i a_i / (q^2 + b_i) + sum_i c_i exp(-d_i q^2)                         [A]
    V(r)     = 2 pi^2 a0 e sum_i a_i / r exp(-2 pi r sqrt(b_i))
               + 2 pi^(5/2) a0 e sum_i c_i d_i^(-3/2) exp(-pi^2 r^2 / d_i)              [V]
    v_z(r)   = 4 pi^2 a0 e sum_i a_i K0(2 pi r sqrt(b_i))
               + 2 pi^2 a0 e sum_i (c_i / d_i) exp(-pi^2 r^2 / d_i)                      [V*A]

(Kirkland eqs. C.15, C.17, C.19), with Kirkland's a0 = 0.5292 A and e = 14.4 V*A. The 3D
potential is ``V(r) = 2 pi a0 e * integral f_e(q) exp(2 pi i q.r) d^3q`` (``2 pi a0 e = h^2 /
(2 pi m0 e) = 47.88 V*A^2``), so the 2D Fourier transform of the projected potential is
``2 pi a0 e f_e(|q|)`` [V*A^3] and its integral over the plane is ``2 pi a0 e f_e(0)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from scipy.special import k0

# Kirkland's constants (Appendix C): Bohr radius [A] and e^2/(4 pi eps0) per e [V*A].
BOHR_RADIUS_A = 0.5292
ELECTRON_CHARGE_VA = 14.4
# 2 pi a0 e = h^2 / (2 pi m0 e) [V*A^2]: scattering factor [A] -> potential Fourier amplitude.
SCATTERING_TO_POTENTIAL_VA2 = 2 * math.pi * BOHR_RADIUS_A * ELECTRON_CHARGE_VA

# Below this radius [A] the log singularity of K0 is evaluated here instead of at r.
_MIN_RADIUS_A = 1e-6


@dataclass(frozen=True)
class KirklandParameters:
    """Fit parameters of one element: ``a`` [A^-1], ``b`` [A^-2], ``c`` [A], ``d`` [A^2], three each."""

    Z: int
    symbol: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray


@functools.lru_cache(maxsize=1)
def _table() -> dict[int, KirklandParameters]:
    text = resources.files("phaser.simulate").joinpath("kirkland_params.txt").read_text()
    table = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        # Kirkland's column order: a1 b1 a2 b2 a3 b3 c1 d1 c2 d2 c3 d3.
        values = np.array([float(v) for v in fields[2:14]])
        ab, cd = values[:6].reshape(3, 2), values[6:].reshape(3, 2)
        z = int(fields[0])
        table[z] = KirklandParameters(z, fields[1], ab[:, 0], ab[:, 1], cd[:, 0], cd[:, 1])
    return table


def atomic_number(element: int | str) -> int:
    """Atomic number of ``element`` given as ``Z`` or a chemical symbol (``"Si"``)."""
    if isinstance(element, str):
        for z, params in _table().items():
            if params.symbol.lower() == element.strip().lower():
                return z
        raise ValueError(f"unknown element symbol {element!r}")
    z = int(element)
    if z not in _table():
        raise ValueError(f"no Kirkland parameters for Z={z}: the table covers Z=1..{max(_table())}")
    return z


def kirkland_parameters(element: int | str) -> KirklandParameters:
    """Kirkland (2010, Appendix C) parameters of ``element`` (``Z`` or symbol)."""
    return _table()[atomic_number(element)]


def element_symbol(element: int | str) -> str:
    """Chemical symbol of ``element`` (``Z`` or symbol)."""
    return kirkland_parameters(element).symbol


def scattering_factor(element: int | str, q_invA: Any) -> np.ndarray:
    """Electron scattering factor f_e [A] at spatial frequency ``q_invA`` [1/A] (no 2 pi)."""
    p = kirkland_parameters(element)
    q2 = np.asarray(q_invA, dtype=np.float64)[..., None] ** 2
    return np.sum(p.a / (q2 + p.b) + p.c * np.exp(-p.d * q2), axis=-1)


def potential_radial(element: int | str, r_A: Any) -> np.ndarray:
    """3D atomic potential V [V] at distance ``r_A`` [A] from the nucleus (Kirkland eq. C.17)."""
    p = kirkland_parameters(element)
    r = np.maximum(np.asarray(r_A, dtype=np.float64), _MIN_RADIUS_A)[..., None]
    yukawa = 2 * math.pi**2 * BOHR_RADIUS_A * ELECTRON_CHARGE_VA * p.a / r * np.exp(-2 * math.pi * r * np.sqrt(p.b))
    gauss = 2 * math.pi**2.5 * BOHR_RADIUS_A * ELECTRON_CHARGE_VA * p.c * p.d**-1.5 * np.exp(-(math.pi**2) * r**2 / p.d)
    return np.sum(yukawa + gauss, axis=-1)


def projected_potential_radial(element: int | str, r_A: Any) -> np.ndarray:
    """Projected potential v_z [V*A] of one atom at in-plane distance ``r_A`` [A] (Kirkland eq. C.19).

    Diverges logarithmically at ``r = 0``; radii below 1e-6 A are evaluated at 1e-6 A.
    """
    p = kirkland_parameters(element)
    r = np.maximum(np.asarray(r_A, dtype=np.float64), _MIN_RADIUS_A)[..., None]
    bessel = 4 * math.pi**2 * BOHR_RADIUS_A * ELECTRON_CHARGE_VA * p.a * k0(2 * math.pi * r * np.sqrt(p.b))
    gauss = 2 * math.pi**2 * BOHR_RADIUS_A * ELECTRON_CHARGE_VA * p.c / p.d * np.exp(-(math.pi**2) * r**2 / p.d)
    return np.sum(bessel + gauss, axis=-1)


def projected_potential_fourier(element: int | str, q_invA: Any, B_A2: float = 0.0) -> np.ndarray:
    """2D Fourier transform [V*A^3] of one atom's projected potential at ``q_invA`` [1/A].

    ``2 pi a0 e f_e(q) exp(-B q^2 / 4)``: the Debye-Waller factor ``exp(-B s^2)`` with
    ``s = q / 2`` and ``B = 8 pi^2 <u^2>`` [A^2] (``u`` the rms displacement along one axis)
    convolves the potential with a Gaussian of standard deviation ``u`` per in-plane axis.
    """
    q = np.asarray(q_invA, dtype=np.float64)
    return SCATTERING_TO_POTENTIAL_VA2 * scattering_factor(element, q) * np.exp(-B_A2 * q**2 / 4)


def projected_potential_integral(element: int | str) -> float:
    """Integral of one atom's projected potential over the plane [V*A^3]: ``2 pi a0 e f_e(0)``."""
    return float(SCATTERING_TO_POTENTIAL_VA2 * scattering_factor(element, 0.0))


def u_rms_to_B(u_rms_A: float) -> float:
    """Debye-Waller B [A^2] of an rms displacement ``u_rms_A`` [A] along one axis: ``8 pi^2 u^2``."""
    return 8 * math.pi**2 * u_rms_A**2


def B_to_u_rms(B_A2: float) -> float:
    """Rms displacement [A] along one axis for a Debye-Waller B [A^2]."""
    return math.sqrt(B_A2 / (8 * math.pi**2))
