"""What an engine receives besides the state: backend, random source, observers, its place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phaser.backend import Backend
from phaser.observers import ObserverSet


@dataclass
class EngineContext:
    """The run-wide things an engine needs."""

    backend: Backend
    rng: np.random.Generator
    observers: ObserverSet
    engine_index: int = 0
    first_iteration: int = 1
    """The engine's first iteration (1-based): above 1 when a run resumes inside this engine."""
