"""Relativistic electron wavelength and interaction constant."""

from __future__ import annotations

import math

# CODATA 2018 exact / recommended values (NIST, https://physics.nist.gov/cuu/Constants/).
PLANCK_J_S = 6.62607015e-34
ELEMENTARY_CHARGE_C = 1.602176634e-19
ELECTRON_MASS_KG = 9.1093837015e-31
SPEED_OF_LIGHT_M_S = 299792458.0
ELECTRON_REST_ENERGY_EV = ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2 / ELEMENTARY_CHARGE_C


def electron_wavelength_A(kv: float) -> float:
    """Relativistic de Broglie wavelength [A] of electrons accelerated through ``kv`` [kV]."""
    if kv <= 0:
        raise ValueError(f"accelerating voltage must be positive, got {kv} kV")
    energy_j = kv * 1e3 * ELEMENTARY_CHARGE_C
    momentum = math.sqrt(
        2 * ELECTRON_MASS_KG * energy_j * (1 + energy_j / (2 * ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2))
    )
    return PLANCK_J_S / momentum * 1e10


def interaction_constant(kv: float) -> float:
    """Interaction constant sigma [rad/(V*A)]: phase shift per unit projected potential.

    sigma = 2 pi m e lambda / h^2 with the relativistic mass m, written as
    2 pi / (lambda V) * (m0 c^2 + eV) / (2 m0 c^2 + eV) (Kirkland, Advanced Computing in
    Electron Microscopy, eq. 5.6).
    """
    voltage_v = kv * 1e3
    rest = ELECTRON_REST_ENERGY_EV
    return 2 * math.pi / (electron_wavelength_A(kv) * voltage_v) * (rest + voltage_v) / (2 * rest + voltage_v)
