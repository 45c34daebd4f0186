"""Shared set-up of the study tests: a tiny simulated dataset with its truth, and study writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import simulated_file

# A template over the object learning rate: 6 gradient iterations on an 8x8 scan of 32x32 patterns.
TEMPLATE = """\
name: tiny
backend: jax
raw_data: {type: manual, path: data.h5}
init:
  probe: {type: focused, conv_angle: 20.0, defocus: 100.0}
  scan: {type: raster}
engines:
- type: gradient
  niter: 6
  grouping: 16
  noise_model: {type: poisson, eps: 0.1}
  solvers:
    object: {type: adam, learning_rate: !float {low: 1.0e-3, high: 0.2, log: true, name: lr}}
    probe: {type: adam, learning_rate: 0.01}
  update_probe: {after: 3}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage a study may live in: an SQLite file, and a PostgreSQL database (one study
    name per test, so tests sharing the database never meet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8x8-scan dataset written by the simulator, its truth inside."""
    return simulated_file(tmp_path_factory.mktemp("study_data") / "data.h5")[1]


def write_study(folder: Path, dataset: Path, template_text: str = TEMPLATE, **fields: Any) -> Path:
    """A study file (and its template) in ``folder``; ``fields`` override the study's entries."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "data.h5"
    if not target.exists():
        target.symlink_to(dataset)
    (folder / "template.yaml").write_text(template_text)
    study: dict[str, Any] = {
        "name": "tiny",
        "template": "template.yaml",
        "truth": {"file": "data.h5"},
        "objectives": [{"metric": "mse"}],
        "sampler": {"type": "tpe", "seed": 0, "options": {"n_startup_trials": 2}},
        "pruner": {"type": "none"},
        "report": {"every": 2},
        "n_trials": 4,
        "artifacts": {"dpi": 50},
    }
    study.update(fields)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
