"""The aberration function chi(k) in Krivanek notation.

A complex coefficient ``C_{n,m} = C_a + i C_b`` [A] contributes
``alpha^(n+1) / (n+1) * (C_a cos(m phi) + C_b sin(m phi))`` to ``chi * lambda / (2 pi)``
(O. L. Krivanek, N. Dellby, A. R. Lupini, Ultramicroscopy 78 (1999) 1). Short names: c1 = C10
(defocus, positive = overfocus), a1 = C12, b2 = C21 / 3, a2 = C23, c3 = C30, s3 = C32 / 3, a3 = C34,
b4 = C41 / 4, d4 = C43 / 4, a4 = C45, c5 = C50, s5 = C52, r5 = C54, a5 = C56; the factors 3 and 4
are those of the common axial-coma and star conventions (the plan format of the original phaser
package uses the same ones).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# name -> (n, m, factor with C_nm = factor * value)
ABERRATION_NAMES: dict[str, tuple[int, int, float]] = {
    "c1": (1, 0, 1.0),
    "a1": (1, 2, 1.0),
    "b2": (2, 1, 3.0),
    "a2": (2, 3, 1.0),
    "c3": (3, 0, 1.0),
    "s3": (3, 2, 3.0),
    "a3": (3, 4, 1.0),
    "b4": (4, 1, 4.0),
    "d4": (4, 3, 4.0),
    "a4": (4, 5, 1.0),
    "c5": (5, 0, 1.0),
    "s5": (5, 2, 1.0),
    "r5": (5, 4, 1.0),
    "a5": (5, 6, 1.0),
}


@dataclass(frozen=True)
class Aberration:
    """One Krivanek coefficient ``C_{n,m}`` [A], complex: real part along ``cos(m phi)``."""

    n: int
    m: int
    value_A: complex

    def __post_init__(self) -> None:
        if self.n < 0 or self.m < 0 or self.m > self.n + 1 or (self.n + self.m) % 2 == 0:
            raise ValueError(f"(n={self.n}, m={self.m}) is not a valid Krivanek aberration order")


def complex_value(value: Any) -> complex:
    """A coefficient written as a number, ``{re, im}`` or ``{mag, angle}`` (angle in degrees)."""
    if isinstance(value, dict):
        if "mag" in value:
            return cmath.rect(float(value["mag"]), math.radians(float(value.get("angle", 0.0))))
        return complex(float(value.get("re", 0.0)), float(value.get("im", 0.0)))
    return complex(value)


def aberration_from_name(name: str, value: Any) -> Aberration:
    """:class:`Aberration` from a short name (``c3``) and a value in any form of :func:`complex_value`."""
    key = name.lower()
    if key not in ABERRATION_NAMES:
        raise ValueError(f"unknown aberration {name!r}: expected one of {', '.join(ABERRATION_NAMES)}")
    n, m, factor = ABERRATION_NAMES[key]
    return Aberration(n, m, factor * complex_value(value))


def parse_aberrations(entries: list[Any]) -> list[Aberration]:
    """Plan aberrations: ``{name: value, ...}`` maps and ``{n, m, val | re, im | mag, angle}`` entries."""
    out: list[Aberration] = []
    for entry in entries:
        if isinstance(entry, dict) and "n" in entry and "m" in entry:
            rest = {k: v for k, v in entry.items() if k not in ("n", "m")}
            value = rest["val"] if "val" in rest else rest
            out.append(Aberration(int(entry["n"]), int(entry["m"]), complex_value(value)))
        elif isinstance(entry, dict):
            out.extend(aberration_from_name(name, value) for name, value in entry.items())
        else:
            raise ValueError(f"aberration entry {entry!r}: expected a mapping")
    return out


def aberration_function(
    xp: ModuleType,
    ky: Any,
    kx: Any,
    wavelength_A: float,
    aberrations: list[Aberration],
) -> Any:
    """chi(k) [rad] on the frequency grid ``(ky, kx)`` [1/A]."""
    alpha = wavelength_A * xp.sqrt(ky**2 + kx**2)
    phi = xp.arctan2(ky, kx)
    chi = xp.zeros_like(alpha)
    for ab in aberrations:
        radial = alpha ** (ab.n + 1) / (ab.n + 1)
        if ab.m == 0:
            chi = chi + ab.value_A.real * radial
        else:
            chi = chi + radial * (ab.value_A.real * xp.cos(ab.m * phi) + ab.value_A.imag * xp.sin(ab.m * phi))
    return 2 * math.pi / wavelength_A * chi
