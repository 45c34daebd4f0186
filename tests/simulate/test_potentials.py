"""Kirkland scattering factors and Fourier-space projected potentials.

The radial values below are self-consistency checks (real-space formula vs. its Hankel transform
vs. the Fourier grid), not numbers copied from a publication.
"""

import numpy as np
import pytest
from scipy.integrate import quad, trapezoid
from scipy.special import j0

from phaser.simulate.kirkland import (
    SCATTERING_TO_POTENTIAL_VA2,
    atomic_number,
    kirkland_parameters,
    potential_radial,
    projected_potential_integral,
    projected_potential_radial,
    scattering_factor,
)
from phaser.simulate.potentials import projected_potential_grid, projected_potential_slices

REQUIRED = [*range(1, 41), 42, 50, 59]


def test_table_covers_required_elements():
    for z in REQUIRED:
        assert kirkland_parameters(z).a.shape == (3,)
    assert atomic_number("Sn") == 50 and atomic_number("pr") == 59 and atomic_number(103) == 103
    # Published Kirkland (2010) entry for Si, a1 and d3.
    si = kirkland_parameters("Si")
    assert si.a[0] == pytest.approx(1.06543892) and si.d[2] == pytest.approx(9.99096638)


def test_scattering_to_potential_constant():
    # 2 pi a0 e = h^2 / (2 pi m0 e) = 47.878 V*A^2 (Kirkland).
    assert SCATTERING_TO_POTENTIAL_VA2 == pytest.approx(47.878, rel=1e-4)


@pytest.mark.parametrize("element", ["C", "Si", "Sr", "Au"])
def test_projected_integral_equals_forward_scattering_factor(element):
    integral, _ = quad(lambda r: 2 * np.pi * r * projected_potential_radial(element, r), 0, np.inf, limit=200)
    volume, _ = quad(lambda r: 4 * np.pi * r**2 * potential_radial(element, r), 0, np.inf, limit=200)
    expected = SCATTERING_TO_POTENTIAL_VA2 * scattering_factor(element, 0.0)
    assert integral == pytest.approx(expected, rel=1e-3)
    assert volume == pytest.approx(expected, rel=1e-3)
    assert projected_potential_integral(element) == pytest.approx(expected)


@pytest.mark.parametrize("element", ["Si", "Au"])
def test_radial_formula_is_hankel_transform_of_scattering_factor(element):
    q = np.linspace(0, 200, 400_001)
    f = scattering_factor(element, q)
    for r in (0.5, 1.0, 1.5):
        hankel = SCATTERING_TO_POTENTIAL_VA2 * trapezoid(2 * np.pi * q * j0(2 * np.pi * q * r) * f, q)
        assert hankel == pytest.approx(projected_potential_radial(element, r), rel=5e-3)


def _single_atom(element, position, B=0.0, cell=12.0, sampling=0.05):
    n = round(cell / sampling)
    grid = projected_potential_grid([position], [element], (cell, cell), (n, n), B)
    x = np.arange(n) * cell / n
    r = np.hypot(x[None, :] - position[0], x[:, None] - position[1])
    return grid, r, (cell / n) ** 2


@pytest.mark.parametrize("element", ["Si", "Au"])
def test_grid_matches_radial_formula_and_integral(element):
    position = (6.0183, 5.9871)  # off the pixel grid on purpose
    grid, r, pixel_area = _single_atom(element, position)
    assert grid.sum() * pixel_area == pytest.approx(projected_potential_integral(element), rel=1e-3)
    for r0 in (0.5, 1.0, 1.5):
        near = np.abs(r - r0) < 0.03
        expected = projected_potential_radial(element, r[near])
        np.testing.assert_allclose(grid[near], expected, rtol=0.02, atol=0.01 * projected_potential_radial(element, r0))


def test_thermal_smearing_preserves_integral_and_widens_peak():
    position = (6.0, 6.0)
    static, r, pixel_area = _single_atom("Sr", position, B=0.0)
    thermal, _, _ = _single_atom("Sr", position, B=1.0)
    assert thermal.sum() * pixel_area == pytest.approx(static.sum() * pixel_area, rel=1e-6)

    def fwhm_px(image):
        row = image[round(position[1] / 0.05)]
        return np.count_nonzero(row >= row.max() / 2)

    assert thermal.max() < static.max()
    assert fwhm_px(thermal) > fwhm_px(static)


def test_frozen_phonon_averages_towards_debye_waller():
    cell, n = 8.0, 80
    kwargs = dict(cell_A=(cell, cell), thickness_A=2.0, slice_thickness_A=2.0, shape_px=(n, n))
    positions, Z, B = [[4.0, 4.0, 1.0]], [14], {"Si": 1.5}
    smeared = projected_potential_slices(positions, Z, B_A2=B, **kwargs)[0]
    phonons = np.mean(
        [projected_potential_slices(positions, Z, B_A2=B, frozen_phonon_seed=s, **kwargs)[0] for s in range(64)], axis=0
    )
    static = projected_potential_slices(positions, Z, **kwargs)[0]
    assert np.abs(phonons - smeared).max() < 0.5 * np.abs(static - smeared).max()


def test_atoms_go_to_the_slice_holding_their_z():
    positions = [[2.0, 2.0, 0.5], [2.0, 2.0, 3.9], [2.0, 2.0, 4.1], [2.0, 2.0, 9.99]]
    slices = projected_potential_slices(positions, [6, 14, 50, 79], (4.0, 4.0), 10.0, 2.0, (32, 32))
    assert slices.shape == (5, 32, 32)
    integrals = slices.sum(axis=(1, 2)) * (4.0 / 32) ** 2
    expected = [
        projected_potential_integral(6),
        projected_potential_integral(14),
        projected_potential_integral(50),
        0.0,
        projected_potential_integral(79),
    ]
    np.testing.assert_allclose(integrals, expected, rtol=1e-4, atol=1e-6)


def test_periodic_cell_wraps_atoms():
    inside = projected_potential_grid([[0.1, 0.2]], [8], (5.0, 5.0), (50, 50))
    shifted = projected_potential_grid([[5.1, -4.8]], [8], (5.0, 5.0), (50, 50))
    np.testing.assert_allclose(inside, shifted, atol=1e-9 * inside.max())
