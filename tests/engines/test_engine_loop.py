"""The one engine loop (init/step pairs from a registry) and the per-iteration records it keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from phaser.backend import get_backend, make_rng
from phaser.engines.context import EngineContext
from phaser.engines.loop import (
    EngineImplementation,
    IterationResult,
    engine_implementation,
    register_engine,
    run_engine,
)
from phaser.io.state_file import load_state, save_state
from phaser.observers import Observer, ObserverSet
from phaser.plan import validate_plan
from phaser.run import run_plan
from phaser.state import ReconsState
from tests.helpers import plan_for, simulated_file

# --- a toy engine: one number halved each iteration ------------------------------------------------


@dataclass(frozen=True)
class ToyState:
    value: float
    poison_at: int  # the iteration whose result is NaN (0: never)
    interrupt_at: int  # the iteration that raises KeyboardInterrupt (0: never)


def _toy_init(plan: Any, state: ReconsState, patterns: np.ndarray, ctx: EngineContext) -> ToyState:
    return ToyState(float(np.real(np.asarray(state.object_slices)[0, 0, 0])), plan.poison_at, plan.interrupt_at)


def _toy_step(engine: ToyState, i: int) -> tuple[ToyState, IterationResult]:
    if i == engine.interrupt_at:
        raise KeyboardInterrupt
    new = replace(engine, value=engine.value / 2)
    error = math.nan if i == engine.poison_at else new.value
    return new, IterationResult(error=error, loss=10 * new.value)


def _toy_write_back(engine: ToyState, state: ReconsState) -> ReconsState:
    state.object_slices = np.full((1, 2, 2), engine.value, np.complex64)
    return state


TOY = EngineImplementation(init=_toy_init, step=_toy_step, write_back=_toy_write_back, divergence_hint="toy hint")


@pytest.fixture(autouse=True)
def toy_registered() -> None:
    register_engine("toy", TOY)


def _state() -> ReconsState:
    return ReconsState(
        kv=200.0,
        wavelength_A=0.025,
        sampling_A=(0.2, 0.2),
        probe_modes=np.ones((1, 2, 2), np.complex64),
        object_slices=np.full((1, 2, 2), 64.0, np.complex64),
        slice_thicknesses_A=np.ones(1),
        positions_A=np.zeros((1, 2)),
        initial_positions_A=np.zeros((1, 2)),
        tilt_mrad=np.zeros((1, 2)),
    )


def _run(niter: int = 4, first: int = 1, observers: list[Any] | None = None, engine_index: int = 2, **plan: Any):
    fields = {"type": "toy", "niter": niter, "poison_at": 0, "interrupt_at": 0, **plan}
    ctx = EngineContext(
        backend=get_backend("numpy", "float32"),
        rng=make_rng(0),
        observers=ObserverSet(observers or []),
        engine_index=engine_index,
        first_iteration=first,
    )
    state = _state()
    state.engine_index = engine_index
    return run_engine(SimpleNamespace(**fields), state, np.zeros((1, 2, 2)), ctx), state


def test_the_loop_runs_the_pair_and_records_every_iteration() -> None:
    result, _ = _run(niter=4)
    assert result.iteration == 4
    assert result.error_history == [32.0, 16.0, 8.0, 4.0]
    assert result.loss_history == [320.0, 160.0, 80.0, 40.0]  # the engine's own loss, beside the error
    assert result.error_iterations == [1, 2, 3, 4]
    assert result.error_engines == [2, 2, 2, 2]
    assert len(result.iteration_seconds) == 4 and all(s >= 0 for s in result.iteration_seconds)
    assert np.real(result.object_slices[0, 0, 0]) == 4.0  # written back at the end


def test_a_resumed_engine_runs_only_its_remaining_iterations() -> None:
    result, _ = _run(niter=5, first=4)
    assert result.error_history == [32.0, 16.0]


def test_an_observer_stops_the_engine_and_sees_synced_variables() -> None:
    seen: list[float] = []

    class StopAtTwo(Observer):
        def iteration_done(self, state: ReconsState, sync: Any, i: int, niter: int) -> bool:
            sync()
            seen.append(float(np.real(state.object_slices[0, 0, 0])))
            return i == 2

    result, _ = _run(niter=6, observers=[StopAtTwo()])
    assert seen == [32.0, 16.0] and result.iteration == 2 and len(result.error_history) == 2


def test_divergence_names_the_engine_and_iteration_and_keeps_the_last_finite_iterate() -> None:
    with pytest.raises(FloatingPointError, match=r"engines\[2\].*iteration 3.*toy hint"):
        _run(niter=5, poison_at=3)
    # run again to look at the state the failed run leaves behind
    state = _state()
    ctx = EngineContext(get_backend("numpy", "float32"), make_rng(0), ObserverSet([]), 2, 1)
    plan = SimpleNamespace(type="toy", niter=5, poison_at=3, interrupt_at=0)
    with pytest.raises(FloatingPointError):
        run_engine(plan, state, np.zeros((1, 2, 2)), ctx)
    assert state.iteration == 2 and state.error_history == [32.0, 16.0]
    assert np.real(state.object_slices[0, 0, 0]) == 16.0  # not the diverged iterate's 8


def test_ctrl_c_keeps_the_last_completed_iteration() -> None:
    state = _state()
    ctx = EngineContext(get_backend("numpy", "float32"), make_rng(0), ObserverSet([]), 0, 1)
    with pytest.raises(KeyboardInterrupt):
        run_engine(SimpleNamespace(type="toy", niter=5, poison_at=0, interrupt_at=4), state, np.zeros((1, 2, 2)), ctx)
    assert state.iteration == 3 and np.real(state.object_slices[0, 0, 0]) == 8.0


def test_an_unknown_engine_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'nope' has no implementation.*conventional.*gradient"):
        engine_implementation("nope")


def test_the_built_in_engines_are_registered_pairs() -> None:
    for name in ("gradient", "conventional"):
        implementation = engine_implementation(name)
        assert isinstance(implementation, EngineImplementation)


# --- the common error across a chained plan ------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_file(tmp_path_factory.mktemp("data") / "sim.h5")[1]


def _gradient(noise: dict[str, Any], niter: int, learning_rate: float = 0.02) -> dict[str, Any]:
    return {
        "type": "gradient",
        "niter": niter,
        "grouping": 16,
        "noise_model": noise,
        "update_probe": False,
        "solvers": {"object": {"type": "adam", "learning_rate": learning_rate}},
    }


def test_a_chained_plan_has_one_comparable_error_curve(dataset: Path, tmp_path: Path) -> None:
    """Poisson, then two engines that leave the object as it is (a learning rate of 1e-9), with the
    Poisson and the Anscombe noise model: they see the same state, so the same error, while their
    own losses differ in scale."""
    poisson, anscombe = {"type": "poisson", "eps": 0.1}, {"type": "anscombe", "eps": 0.1}
    engines = [_gradient(poisson, 3), _gradient(poisson, 1, 1e-9), _gradient(anscombe, 1, 1e-9)]
    state = run_plan(validate_plan(plan_for(dataset, engines, seed=1)))
    assert state.error_engines == [0, 0, 0, 1, 2]
    errors, losses = np.asarray(state.error_history), np.asarray(state.loss_history)
    assert abs(losses[4] / losses[3] - 1) > 0.1  # measured: Poisson 1247, Anscombe 986 on one state
    assert errors[4] == pytest.approx(errors[3], rel=1e-4)
    assert errors[3] < errors[0]
    # and everything reaches the output file and comes back
    path = save_state(tmp_path / "s.h5", state)
    saved = load_state(path)
    assert saved.error_history == pytest.approx(state.error_history)
    assert saved.loss_history == pytest.approx(state.loss_history)
    assert saved.error_engines == state.error_engines
    assert saved.iteration_seconds == pytest.approx(state.iteration_seconds)
