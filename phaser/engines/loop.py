"""The one engine driver: an engine is an ``init``/``step`` pair (in the optax spirit); this loop runs it.

An engine implementation provides

- ``init(plan, state, patterns, ctx) -> engine_state``: everything the iterations need, built once;
- ``step(engine_state, i) -> (engine_state, IterationResult)``: iteration ``i`` (1-based) as a new
  engine state, without changing the old one (so a diverged iterate can be dropped);
- ``write_back(engine_state, state)``: the engine's variables copied into the shared state.

The loop does the rest once for every engine: the iteration range (resumed runs start inside an
engine), the divergence check that keeps the last finite iterate, the iteration count, the
per-iteration records (common error, own loss, engine index, wall time), the observers (which may
stop the engine early) and the write-back, also on Ctrl-C or an error. Implementations are found by
the plan's engine ``type`` in a registry; :func:`register_engine` adds one.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from phaser.engines.context import EngineContext
from phaser.state import ReconsState

logger = logging.getLogger(__name__)


class IterationResult(NamedTuple):
    """What one iteration reports: its common error and the engine's own loss (both per the pass)."""

    error: float
    """The amplitude R-factor of :mod:`phaser.engines.errors`, the same for every engine."""
    loss: float
    """The engine's noise-model loss per pattern, averaged over all positions."""


@dataclass(frozen=True)
class EngineImplementation:
    """An engine as the loop sees it (see the module docstring)."""

    init: Callable[[Any, ReconsState, np.ndarray, EngineContext], Any]
    step: Callable[[Any, int], tuple[Any, IterationResult]]
    write_back: Callable[[Any, ReconsState], None]
    divergence_hint: str = "lower the step sizes or raise the noise model's eps"
    """Appended to the error message when an iteration's error is not finite."""


_REGISTRY: dict[str, EngineImplementation | str] = {
    # imported on first use, so that a numpy-only run never imports jax
    "gradient": "phaser.engines.gradient:GRADIENT_ENGINE",
    "conventional": "phaser.engines.conventional.run:CONVENTIONAL_ENGINE",
}


def register_engine(engine_type: str, implementation: EngineImplementation | str) -> None:
    """Make ``implementation`` (or ``"module:attribute"`` naming it) run plans' engines of ``engine_type``."""
    _REGISTRY[engine_type] = implementation


def engine_implementation(engine_type: str) -> EngineImplementation:
    """The implementation registered for ``engine_type`` (imported on first use)."""
    try:
        found = _REGISTRY[engine_type]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"engine type {engine_type!r} has no implementation (known: {known})") from None
    if isinstance(found, str):
        module, _, attribute = found.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        _REGISTRY[engine_type] = found
    return found


def run_engine(plan: Any, state: ReconsState, patterns: np.ndarray, ctx: EngineContext) -> ReconsState:
    """Run iterations ``ctx.first_iteration .. plan.niter`` of the engine ``plan`` on ``state``.

    ``patterns`` are ``(P, N, N)`` measured intensities, centred. Returns ``state`` updated; whatever
    stops the loop, the state holds the last completed (finite) iteration.
    """
    implementation = engine_implementation(plan.type)
    engine_state = implementation.init(plan, state, patterns, ctx)
    try:
        for i in range(ctx.first_iteration, plan.niter + 1):
            started = time.perf_counter()
            new_engine_state, result = implementation.step(engine_state, i)
            error, loss = float(result.error), float(result.loss)
            if not (math.isfinite(error) and math.isfinite(loss)):
                # the diverged iterate is dropped: the state keeps the last finite one
                raise FloatingPointError(
                    f"engines[{ctx.engine_index}]: the error became {error} (loss {loss}) at iteration {i}; "
                    f"{implementation.divergence_hint}"
                )
            engine_state = new_engine_state
            state.iteration += 1
            state.record_iteration(error, loss, time.perf_counter() - started)
            sync = partial(implementation.write_back, engine_state, state)
            if ctx.observers.iteration_done(state, sync, i, plan.niter):
                logger.info("engine %d stopped early at iteration %d", ctx.engine_index, i)
                break
    finally:
        implementation.write_back(engine_state, state)
    return state
