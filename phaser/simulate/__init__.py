"""Simulated 4D-STEM datasets from known objects or specimens, for tests, examples, studies and the quickstart."""

from phaser.simulate.dataset import (
    SimulatedDataset,
    incoherent_probe_modes,
    required_object_shape,
    simulate_dataset,
)
from phaser.simulate.files import read_truth, write_dataset
from phaser.simulate.from_specimen import read_potential, simulate_specimen_dataset, write_specimen_dataset
from phaser.simulate.objects import gaussian_atom_phase, transmission
from phaser.simulate.truth import band_limited_potential, fourier_crop, specimen_truth

__all__ = [
    "SimulatedDataset",
    "band_limited_potential",
    "fourier_crop",
    "gaussian_atom_phase",
    "incoherent_probe_modes",
    "read_potential",
    "read_truth",
    "required_object_shape",
    "simulate_dataset",
    "simulate_specimen_dataset",
    "specimen_truth",
    "transmission",
    "write_dataset",
    "write_specimen_dataset",
]
