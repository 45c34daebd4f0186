"""Specimen YAML schema, oriented crystals, ground-truth specimens and their potentials."""

from collections import Counter
from pathlib import Path

import numpy as np
import pydantic
import pytest

pytest.importorskip("ase")

from phaser.simulate.kirkland import projected_potential_integral  # noqa: E402
from phaser.simulate.specimen import (  # noqa: E402
    Specimen,
    build_atoms,
    load_specimen,
    miller_indices_of_direction,
    specimen_potential,
)

GROUND_TRUTH = Path(__file__).resolve().parents[2] / "ground_truth"

EXPECTED = {
    "SrTiO3_001.yaml": {"Sr": 160, "Ti": 160, "O": 480},
    "Si_110_Sn.yaml": {"Si": 2544, "Sn": 3},
    "MoS2_monolayer.yaml": {"Mo": 48, "S": 96},
    "PrScO3_001.yaml": {"Pr": 180, "Sc": 180, "O": 540},
}

STO = {
    "type": "spacegroup",
    "spacegroup": 221,
    "cellpar": [3.905, 3.905, 3.905, 90, 90, 90],
    "symbols": ["Sr", "Ti", "O"],
    "basis": [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ground_truth_loads_and_has_expected_composition(name):
    spec = load_specimen(GROUND_TRUTH / name)
    atoms = build_atoms(spec)
    assert Counter(atoms.get_chemical_symbols()) == EXPECTED[name]
    assert np.allclose(atoms.cell.array, np.diag(atoms.cell.lengths()))
    assert atoms.positions[:, 2].min() >= -1e-6 and atoms.positions[:, 2].max() < spec.thickness


def test_schema_rejects_unknown_keys_and_conflicting_thermal_factors():
    with pytest.raises(pydantic.ValidationError):
        Specimen(name="x", structure=STO, thickness=4.0, colour="red")
    with pytest.raises(pydantic.ValidationError):
        Specimen(name="x", structure=STO, thickness=4.0, debye_waller={"O": 0.5}, u_rms={"O": 0.1})


def test_miller_indices_of_zone_axes():
    cubic = np.eye(3) * 5.431
    assert miller_indices_of_direction(cubic, (1, 1, 0)) == (1, 1, 0)
    hexagonal = np.array([[3.16, 0, 0], [-1.58, 3.16 * np.sqrt(3) / 2, 0], [0, 0, 12.3]])
    assert miller_indices_of_direction(hexagonal, (0, 0, 1)) == (0, 0, 1)
    assert miller_indices_of_direction(hexagonal, (1, 0, 0)) == (2, -1, 0)
    with pytest.raises(ValueError):
        miller_indices_of_direction(hexagonal, (1, 0, 1))


def test_si_110_orientation_shows_dumbbells_along_z():
    spec = Specimen(
        name="si",
        structure={"type": "bulk", "name": "Si", "crystalstructure": "diamond", "a": 5.431},
        zone_axis=(1, 1, 0),
        thickness=3.84,
    )
    atoms = build_atoms(spec)
    assert atoms.cell.lengths() == pytest.approx([5.431 * np.sqrt(2), 5.431, 3.84], abs=2e-3)
    assert len(atoms) == 8


def test_srtio3_potential_is_periodic_with_lattice_constant():
    spec = load_specimen(GROUND_TRUTH / "SrTiO3_001.yaml").model_copy(update={"thickness": 3.905})
    slices, cell = specimen_potential(spec, sampling_A=3.905 / 32, slice_thickness_A=3.905)
    assert slices.shape == (1, 128, 128) and cell[0] == pytest.approx(4 * 3.905)
    projected = slices[0]
    np.testing.assert_allclose(np.roll(projected, 32, axis=0), projected, atol=1e-4 * projected.max())
    np.testing.assert_allclose(np.roll(projected, 32, axis=1), projected, atol=1e-4 * projected.max())
    # Sr column at the origin; O-only columns are weaker than the Sr and Ti-O columns.
    assert projected[0, 0] > projected[0, 16] and projected[16, 16] > projected[0, 16]
    expected = 16 * sum(projected_potential_integral(e) for e in ("Sr", "Ti", "O", "O", "O"))
    assert projected.sum() * (3.905 / 32) ** 2 == pytest.approx(expected, rel=1e-4)


def test_dopant_depth_lands_in_its_slice():
    spec = Specimen(
        name="sto_sn",
        structure=STO,
        supercell=(2, 2),
        thickness=8 * 3.905,
        dopants=[
            {"element": "Sn", "site": "interstitial", "depth": 13.0, "position": [0.25, 0.25]},
            {"element": "Ba", "site": "substitutional", "depth": 20.0, "position": [0.5, 0.5]},
        ],
    )
    atoms = build_atoms(spec)
    symbols = np.array(atoms.get_chemical_symbols())
    sn, ba = atoms.positions[symbols == "Sn"], atoms.positions[symbols == "Ba"]
    assert sn[0] == pytest.approx([0.25 * 7.81, 0.25 * 7.81, 13.0])
    assert ba[0] == pytest.approx([3.905, 3.905, 5 * 3.905])  # nearest Sr site
    assert Counter(symbols)["Sr"] == 4 * 8 - 1

    slices, _ = specimen_potential(spec, sampling_A=0.25, slice_thickness_A=2.0)
    bare, _ = specimen_potential(spec.model_copy(update={"dopants": []}), sampling_A=0.25, slice_thickness_A=2.0)
    changed = np.flatnonzero(np.abs(slices - bare).max(axis=(1, 2)) > 1e-3)
    assert list(changed) == [6, 9]  # 13.0 A // 2 and 19.525 A // 2


def test_surface_layers_add_amorphous_carbon_at_density():
    spec = Specimen(
        name="sto_c",
        structure=STO,
        supercell=(4, 4),
        thickness=3.905,
        surface_layers={"thickness": 10.0, "density": 2.0, "seed": 1},
    )
    atoms = build_atoms(spec)
    carbon = atoms.positions[np.array(atoms.get_chemical_symbols()) == "C"]
    volume_cm3 = (4 * 3.905) ** 2 * 10.0 * 1e-24
    expected_per_side = round(2.0 * volume_cm3 / (12.011 * 1.66054e-24))
    assert len(carbon) == 2 * expected_per_side
    assert atoms.cell.lengths()[2] == pytest.approx(23.905)
    crystal_z = atoms.positions[np.array(atoms.get_chemical_symbols()) != "C", 2]
    assert crystal_z.min() >= 10.0 - 1e-6 and crystal_z.max() < 13.905
