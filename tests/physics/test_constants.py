"""Relativistic wavelength and interaction constant against tabulated values (Kirkland)."""

from __future__ import annotations

import pytest

from phaser.physics.constants import electron_wavelength_A, interaction_constant


@pytest.mark.parametrize(("kv", "expected_A"), [(300.0, 0.019687), (200.0, 0.025079), (100.0, 0.037014)])
def test_wavelength_matches_tables(kv, expected_A):
    # tables give 5 significant digits: agree to half a unit in the last one
    assert electron_wavelength_A(kv) == pytest.approx(expected_A, abs=0.5e-6)


def test_interaction_constant_300kv():
    # 6.5262e-4 rad/(V*A) to 4 significant digits
    assert interaction_constant(300.0) == pytest.approx(6.5262e-4, rel=1e-4)


def test_interaction_constant_decreases_with_voltage():
    sigmas = [interaction_constant(kv) for kv in (60.0, 80.0, 200.0, 300.0)]
    assert all(a > b for a, b in zip(sigmas[:-1], sigmas[1:], strict=True))


@pytest.mark.parametrize("kv", [0.0, -200.0])
def test_rejects_non_positive_voltage(kv):
    with pytest.raises(ValueError, match="positive"):
        electron_wavelength_A(kv)
    with pytest.raises(ValueError):
        interaction_constant(kv)
