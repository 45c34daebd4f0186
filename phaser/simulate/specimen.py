"""Specimens described in YAML: a crystal cut along a zone axis, with optional surface layers and dopants.

A :class:`Specimen` names a structure (an ``ase.build.bulk`` crystal, a space group with its
basis, or a CIF/XYZ file), the zone axis that points along the beam (z), the lateral repeats,
the thickness [A], Debye-Waller factors, amorphous surface layers and single dopant atoms.
:func:`build_atoms` turns it into an ``ase.Atoms`` with an orthogonal cell ``(Lx, Ly, Lz)``
and the entrance surface at ``z = 0``; :func:`specimen_potential` slices its projected potential.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from phaser.simulate.kirkland import u_rms_to_B
from phaser.simulate.potentials import projected_potential_slices

# Relative tolerance when matching lattice vectors (perpendicularity, rational Miller indices).
_LATTICE_TOL = 1e-6
# Largest integer coefficient tried when searching a rectangular lateral supercell.
_MAX_SUPERCELL_COEFF = 6
# Atomic mass unit [g].
_AMU_G = 1.66053906660e-24


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkStructure(_Strict):
    """A crystal from ``ase.build.bulk(name, crystalstructure, a=a, c=c, cubic=cubic)``; lengths [A]."""

    type: Literal["bulk"]
    name: str
    crystalstructure: str | None = None
    a: float | None = Field(default=None, gt=0)
    c: float | None = Field(default=None, gt=0)
    cubic: bool = True


class SpacegroupStructure(_Strict):
    """A crystal from ``ase.spacegroup.crystal``: one symbol per basis site (fractional coordinates),
    the space group number (standard setting) and ``cellpar`` ``[a, b, c, alpha, beta, gamma]`` [A, deg]."""

    type: Literal["spacegroup"]
    symbols: list[str]
    basis: list[tuple[float, float, float]]
    spacegroup: int = Field(ge=1, le=230)
    cellpar: tuple[float, float, float, float, float, float]

    @model_validator(mode="after")
    def _one_symbol_per_site(self) -> SpacegroupStructure:
        if len(self.symbols) != len(self.basis):
            raise ValueError(f"{len(self.symbols)} symbols for {len(self.basis)} basis sites")
        return self


class FileStructure(_Strict):
    """A crystal read by ``ase.io.read`` from ``path`` (CIF, XYZ with a cell, ...), relative to the YAML."""

    type: Literal["file"]
    path: str


Structure = Annotated[BulkStructure | SpacegroupStructure | FileStructure, Field(discriminator="type")]


class SurfaceLayers(_Strict):
    """Amorphous layers of ``thickness`` [A] and ``density`` [g/cm^3] on the crystal's surfaces."""

    thickness: float = Field(gt=0)
    density: float = Field(default=2.0, gt=0)
    element: str = "C"
    sides: Literal["both", "entrance", "exit"] = "both"
    min_distance: float = Field(default=1.2, ge=0, description="closest approach of two atoms [A]")
    seed: int = 0


class Dopant(_Strict):
    """One dopant atom at ``depth`` [A] below the crystal's entrance surface and lateral ``position``
    (fractions of the supercell ``(Lx, Ly)``). ``substitutional`` replaces the host atom nearest to
    that point; ``interstitial`` adds the atom exactly there."""

    element: str
    site: Literal["substitutional", "interstitial"]
    depth: float = Field(ge=0)
    position: tuple[float, float] = (0.5, 0.5)


class Specimen(_Strict):
    """A specimen: crystal, orientation, size [A], thermal factors, surface layers and dopants."""

    name: str
    description: str = ""
    structure: Structure
    zone_axis: tuple[int, int, int] = (0, 0, 1)
    supercell: tuple[int, int] = Field(default=(1, 1), description="repeats of the rectangular oriented cell")
    thickness: float = Field(gt=0, description="crystal thickness along the beam [A]")
    debye_waller: dict[str, float] = Field(default_factory=dict, description="element -> B [A^2]")
    u_rms: dict[str, float] = Field(default_factory=dict, description="element -> rms displacement [A]")
    surface_layers: SurfaceLayers | None = None
    dopants: list[Dopant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Specimen:
        if not any(self.zone_axis):
            raise ValueError("zone_axis must not be [0, 0, 0]")
        if min(self.supercell) < 1:
            raise ValueError("supercell repeats must be >= 1")
        both = set(self.debye_waller) & set(self.u_rms)
        if both:
            raise ValueError(f"give debye_waller or u_rms per element, not both: {sorted(both)}")
        if any(v < 0 for v in [*self.debye_waller.values(), *self.u_rms.values()]):
            raise ValueError("Debye-Waller factors must be non-negative")
        return self

    def debye_waller_B(self) -> dict[str, float]:
        """Debye-Waller B [A^2] per element, from ``debye_waller`` and ``u_rms``."""
        return {**self.debye_waller, **{k: u_rms_to_B(v) for k, v in self.u_rms.items()}}


def load_specimen(path: str | Path) -> Specimen:
    """Read a :class:`Specimen` from YAML; a ``file`` structure's path becomes absolute."""
    path = Path(path)
    spec = Specimen.model_validate(yaml.safe_load(path.read_text()))
    if isinstance(spec.structure, FileStructure):
        resolved = (path.parent / spec.structure.path).resolve()
        spec = spec.model_copy(update={"structure": spec.structure.model_copy(update={"path": str(resolved)})})
    return spec


def unit_cell(structure: BulkStructure | SpacegroupStructure | FileStructure) -> Any:
    """The ``ase.Atoms`` unit cell of ``structure``."""
    if isinstance(structure, BulkStructure):
        from ase.build import bulk

        return bulk(structure.name, structure.crystalstructure, a=structure.a, c=structure.c, cubic=structure.cubic)
    if isinstance(structure, SpacegroupStructure):
        from ase.spacegroup import crystal

        return crystal(structure.symbols, structure.basis, spacegroup=structure.spacegroup, cellpar=structure.cellpar)
    import ase.io

    return ase.io.read(structure.path)


def miller_indices_of_direction(cell: np.ndarray, zone_axis: tuple[int, int, int]) -> tuple[int, int, int]:
    """Miller indices (hkl) of the lattice planes normal to direction [uvw] of ``cell`` (rows a1, a2, a3).

    ``t = u a1 + v a2 + w a3`` is normal to (hkl) with ``h_j`` proportional to ``t . a_j``; raises when
    those are not rational (no lattice plane is normal to [uvw], e.g. hexagonal [101] in general).
    """
    direction = np.asarray(zone_axis, dtype=np.float64) @ cell
    components = cell @ direction
    components = components / np.max(np.abs(components))
    fractions = [Fraction(float(c)).limit_denominator(24) for c in components]
    if any(abs(float(f) - c) > 1e-5 for f, c in zip(fractions, components, strict=True)):
        raise ValueError(f"zone axis {list(zone_axis)} is not normal to a lattice plane of this cell")
    denominator = math.lcm(*(f.denominator for f in fractions))
    integers = [int(f * denominator) for f in fractions]
    divisor = math.gcd(*integers)
    return tuple(i // divisor for i in integers)  # type: ignore[return-value]


def _rectangular_lateral(atoms: Any) -> Any:
    """A supercell of ``atoms`` (lateral vectors in the xy plane) whose lateral vectors are
    perpendicular, rotated so the first lies along +x and the second along +y."""
    from ase.build import make_supercell

    a1, a2 = atoms.cell[0][:2], atoms.cell[1][:2]
    best = None
    coeffs = range(-_MAX_SUPERCELL_COEFF, _MAX_SUPERCELL_COEFF + 1)
    pairs = [(i, j) for i in coeffs for j in coeffs if (i, j) != (0, 0)]
    for i1, j1 in pairs:
        v1 = i1 * a1 + j1 * a2
        for i2, j2 in pairs:
            det = i1 * j2 - j1 * i2
            if det <= 0:
                continue
            v2 = i2 * a1 + j2 * a2
            if abs(v1 @ v2) > _LATTICE_TOL * (v1 @ v1 + v2 @ v2):
                continue
            key = (det, np.linalg.norm(v1) + np.linalg.norm(v2))
            if best is None or key < best[0]:
                best = (key, [[i1, j1, 0], [i2, j2, 0], [0, 0, 1]])
    if best is None:
        raise ValueError("no rectangular lateral supercell with small coefficients for this orientation")
    atoms = make_supercell(atoms, best[1])
    atoms.rotate(atoms.cell[0], "x", rotate_cell=True)
    lengths = np.linalg.norm(atoms.cell.array, axis=1)
    atoms.set_cell(np.diag(lengths), scale_atoms=False)
    atoms.wrap()
    return atoms


def oriented_cell(spec: Specimen) -> Any:
    """The structure's repeat unit with ``spec.zone_axis`` along z and a rectangular cell."""
    from ase.build import surface

    crystal = unit_cell(spec.structure)
    hkl = miller_indices_of_direction(crystal.cell.array, spec.zone_axis)
    oriented = surface(crystal, hkl, layers=1, periodic=True)
    oriented.pbc = True
    oriented.wrap()
    return _rectangular_lateral(oriented)


def _amorphous_layer(
    layer: SurfaceLayers, lateral_A: tuple[float, float], z0_A: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    """Random positions [A] of an amorphous layer on ``z0 <= z < z0 + thickness`` at the layer's density."""
    from ase.data import atomic_masses, atomic_numbers

    volume_cm3 = lateral_A[0] * lateral_A[1] * layer.thickness * 1e-24
    count = round(layer.density * volume_cm3 / (atomic_masses[atomic_numbers[layer.element]] * _AMU_G))
    size = np.array([lateral_A[0], lateral_A[1], layer.thickness])
    accepted: list[np.ndarray] = []
    for _ in range(50 * max(count, 1)):
        if len(accepted) == count:
            break
        trial = rng.random(3) * size
        if accepted:
            delta = np.asarray(accepted) - trial
            delta[:, :2] -= np.round(delta[:, :2] / size[:2]) * size[:2]  # laterally periodic
            if np.min(np.sum(delta**2, axis=1)) < layer.min_distance**2:
                continue
        accepted.append(trial)
    positions = np.asarray(accepted).reshape(-1, 3) + [0.0, 0.0, z0_A]
    return positions, [layer.element] * len(positions)


def _place_dopants(atoms: Any, dopants: list[Dopant], z_offset_A: float) -> Any:
    from ase import Atom

    lateral = np.array([atoms.cell[0, 0], atoms.cell[1, 1]])
    for dopant in dopants:
        target = np.array([dopant.position[0] * lateral[0], dopant.position[1] * lateral[1], dopant.depth + z_offset_A])
        if dopant.site == "interstitial":
            atoms.append(Atom(dopant.element, target))
            continue
        delta = atoms.positions - target
        delta[:, :2] -= np.round(delta[:, :2] / lateral) * lateral
        atoms[int(np.argmin(np.sum(delta**2, axis=1)))].symbol = dopant.element
    return atoms


def build_atoms(spec: Specimen) -> Any:
    """``ase.Atoms`` of the specimen: zone axis along z, crystal on ``offset <= z < offset + thickness``
    (``offset`` the entrance surface layer's thickness, else 0), orthogonal cell ``(Lx, Ly, Lz)`` [A]."""
    from ase import Atoms

    repeat = oriented_cell(spec)
    depth = repeat.cell[2, 2]
    crystal = repeat * (spec.supercell[0], spec.supercell[1], math.ceil(spec.thickness / depth) + 1)
    z = crystal.positions[:, 2]
    crystal = crystal[(z > -_LATTICE_TOL) & (z < spec.thickness - _LATTICE_TOL)]
    lateral = (crystal.cell[0, 0], crystal.cell[1, 1])

    layer = spec.surface_layers
    entrance = layer.thickness if layer is not None and layer.sides in ("both", "entrance") else 0.0
    exit_ = layer.thickness if layer is not None and layer.sides in ("both", "exit") else 0.0
    atoms = Atoms(
        crystal.get_chemical_symbols(),
        positions=crystal.positions + [0.0, 0.0, entrance],
        cell=[lateral[0], lateral[1], entrance + spec.thickness + exit_],
        pbc=(True, True, False),
    )
    atoms = _place_dopants(atoms, spec.dopants, entrance)
    if layer is not None:
        rng = np.random.default_rng(layer.seed)
        for z0, present in ((0.0, entrance > 0), (entrance + spec.thickness, exit_ > 0)):
            if present:
                positions, symbols = _amorphous_layer(layer, lateral, z0, rng)
                atoms += Atoms(symbols, positions=positions)
    atoms.wrap()
    return atoms


def specimen_potential(
    spec: Specimen,
    sampling_A: float,
    slice_thickness_A: float,
    frozen_phonon_seed: int | None = None,
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Projected-potential slices [V*A] ``(S, Ny, Nx)`` of the specimen and its cell ``(Lx, Ly, Lz)`` [A].

    The grid has ``round(L / sampling_A)`` pixels per side (pixel size ``L / N``, close to
    ``sampling_A``); slices are ``slice_thickness_A`` thick (the last one may be partly empty).
    Debye-Waller factors smear the atoms, or with ``frozen_phonon_seed`` displace them at random.
    """
    atoms = build_atoms(spec)
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    shape = (max(1, round(ly / sampling_A)), max(1, round(lx / sampling_A)))
    slices = projected_potential_slices(
        atoms.positions,
        atoms.numbers,
        (lx, ly),
        lz,
        slice_thickness_A,
        shape,
        B_A2=spec.debye_waller_B(),
        frozen_phonon_seed=frozen_phonon_seed,
    )
    return slices, (lx, ly, lz)


__all__ = [
    "BulkStructure",
    "Dopant",
    "FileStructure",
    "Specimen",
    "SpacegroupStructure",
    "SurfaceLayers",
    "build_atoms",
    "load_specimen",
    "miller_indices_of_direction",
    "oriented_cell",
    "specimen_potential",
    "unit_cell",
]
