"""Simulated 4D-STEM datasets from known objects, for tests, examples and the quickstart."""

from phaser.simulate.dataset import (
    SimulatedDataset,
    incoherent_probe_modes,
    required_object_shape,
    simulate_dataset,
)
from phaser.simulate.files import read_truth, write_dataset
from phaser.simulate.objects import gaussian_atom_phase, transmission

__all__ = [
    "SimulatedDataset",
    "gaussian_atom_phase",
    "incoherent_probe_modes",
    "read_truth",
    "required_object_shape",
    "simulate_dataset",
    "transmission",
    "write_dataset",
]
