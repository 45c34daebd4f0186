"""Running a plan: load the data, initialise the state, run each engine, report to observers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phaser.backend import get_backend, make_rng, precision_scope, to_numpy
from phaser.engines.context import EngineContext
from phaser.engines.loop import run_engine
from phaser.engines.resample import prepare_for_engine
from phaser.initial import InitContext, object_shape_for, place_positions
from phaser.io.raw_data import RawData, RawDataError
from phaser.io.state_file import load_state, read_state_header
from phaser.observers import Observer, ObserverSet
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import real_space_sampling_A
from phaser.plan.resume import resume_point
from phaser.plan.schema import ReconsPlan, slice_thicknesses
from phaser.state import ReconsState

logger = logging.getLogger("phaser")


@dataclass
class LoadedData:
    """Patterns flattened to ``(P, N, N)`` (centred) and the metadata the run settled on."""

    patterns: np.ndarray
    raw: RawData
    kv: float
    wavelength_A: float
    diff_step_mrad: float


def load_data(plan: ReconsPlan, rng: np.random.Generator) -> LoadedData:
    """Run the raw-data hook and the post-load hooks; check what the reconstruction needs."""
    raw = plan.raw_data()
    for hook in plan.post_load:
        raw = hook(raw, rng)
    wavelength = plan.wavelength or raw.extra.get("wavelength_A")
    if raw.kv is None and wavelength is None:
        raise RawDataError("raw_data.kv: the accelerating voltage is neither in the file nor in the plan")
    if raw.diff_step_mrad is None:
        raise RawDataError("raw_data.diff_step: the detector pixel size [mrad] is neither in the file nor in the plan")
    wavelength = wavelength or electron_wavelength_A(raw.kv)  # type: ignore[arg-type]
    patterns = raw.flat_patterns().astype(np.float32, copy=False)
    return LoadedData(patterns, raw, float(raw.kv or 0.0), wavelength, raw.diff_step_mrad)


def initial_state(plan: ReconsPlan, data: LoadedData, rng: np.random.Generator, seen: Any = None) -> ReconsState:
    """The starting state: from ``init.state`` if given, else from the init hooks (defaults filled).

    The probe is scaled to the mean counts of the patterns ``seen`` (indices; default all), so
    patterns held out of a run do not reach it through the probe's intensity either.
    """
    pattern_shape = data.patterns.shape[-2:]
    counted = data.patterns if seen is None else data.patterns[seen]
    if plan.init.state is not None:
        state = load_state(plan.init.state)
        if state.n_positions != data.patterns.shape[0]:
            raise RawDataError(
                f"init.state: {plan.init.state} has {state.n_positions} positions but the data "
                f"have {data.patterns.shape[0]} patterns"
            )
        return state
    sampling = real_space_sampling_A(data.wavelength_A, pattern_shape, data.diff_step_mrad)
    ctx = InitContext(
        wavelength_A=data.wavelength_A,
        sampling_A=sampling,
        probe_shape=pattern_shape,
        mean_pattern_intensity=float(counted.sum(axis=(-2, -1)).mean()),
        rng=rng,
        scan_shape=data.raw.scan_shape,
        scan_step_A=data.raw.scan_step_A,
    )
    scan_hook = plan.init.scan or _default_hook("scan", "raster")
    positions = np.asarray(scan_hook(ctx), dtype=np.float64)
    if positions.shape[0] != data.patterns.shape[0]:
        raise RawDataError(
            f"init.scan: the scan has {positions.shape[0]} positions but the data have "
            f"{data.patterns.shape[0]} patterns"
        )
    if plan.init.probe is None:
        raise RawDataError("init.probe: required (e.g. {type: focused, conv_angle: 20, defocus: 100})")
    probe = np.asarray(plan.init.probe(ctx))[None]
    pad_px = plan.engines[0].obj_pad_px
    positions = place_positions(positions, sampling, pattern_shape, pad_px)
    thicknesses = slice_thicknesses(plan.slices)
    object_shape = (len(thicknesses), *object_shape_for(positions / np.asarray(sampling), pattern_shape, pad_px))
    object_ctx = InitContext(**{**ctx.__dict__, "object_shape": object_shape})
    object_hook = plan.init.object or _default_hook("object", "random")
    obj = np.asarray(object_hook(object_ctx))
    scan_shape = data.raw.scan_shape or (plan.init.scan.props.shape if plan.init.scan else None)
    tilt = plan.init.tilt(ctx, len(positions)) if plan.init.tilt is not None else np.zeros_like(positions)
    return ReconsState(
        kv=data.kv,
        wavelength_A=data.wavelength_A,
        sampling_A=sampling,
        probe_modes=probe,
        object_slices=obj,
        slice_thicknesses_A=np.asarray(thicknesses),
        positions_A=positions,
        initial_positions_A=positions.copy(),
        tilt_mrad=np.asarray(tilt, dtype=np.float64),
        scan_shape=tuple(scan_shape) if scan_shape else None,
    )


def _default_hook(kind: str, name: str) -> Any:
    from phaser.hooks import Hook, entry

    return Hook(kind, name, entry(kind, name).props_class())


def run_plan(
    plan: ReconsPlan,
    observers: list[Observer] | None = None,
    data: LoadedData | None = None,
    holdout: Any = None,
) -> ReconsState:
    """Run ``plan`` from its data to its last engine; returns the final state.

    Observers hear of every step; whatever stops the run (an error, Ctrl-C) is reported to them
    with the last complete state before it propagates. ``data`` (from :func:`load_data`) skips
    loading, for callers that run many plans on one dataset. With ``holdout`` (position indices)
    the engines never see those patterns; the returned state still has every position, the
    held-out ones at their initial place moved by the mean refinement of the others.
    """
    with precision_scope(plan.resolved_backend()):
        return _run_plan(plan, ObserverSet(observers or []), data, holdout)


def _run_plan(plan: ReconsPlan, watchers: ObserverSet, data: LoadedData | None, holdout: Any) -> ReconsState:
    backend = get_backend(plan.resolved_backend(), plan.dtype)
    rng = make_rng(plan.seed)
    data = data if data is not None else load_data(plan, rng)
    train = None
    if holdout is not None:
        train = np.setdiff1d(np.arange(data.patterns.shape[0]), np.asarray(holdout, dtype=np.int64))
    full_state = initial_state(plan, data, rng, seen=train)
    point = resume_point(plan, read_state_header(plan.init.state)) if plan.init.state is not None else None
    state, all_patterns = full_state, data.patterns
    if train is not None:
        state, all_patterns = select_positions(full_state, train), data.patterns[train]
    watchers.run_started(plan, state)
    try:
        for index, engine in enumerate(plan.engines):
            if point is not None and index < point.engine_index:
                continue  # done by the run the state comes from
            first = point.first_iteration if point is not None and index == point.engine_index else 1
            on_its_grid = point is not None and index == point.state_engine_index
            state, patterns = _prepare(state, index, engine, plan, all_patterns, rng, on_its_grid)
            watchers.engine_started(index, engine, state)
            if first > 1:
                logger.info("engine %d resumes at iteration %d of %d", index, first, engine.niter)
                watchers.engine_resumed(index, engine, state, first)
            ctx = EngineContext(backend=backend, rng=rng, observers=watchers, engine_index=index, first_iteration=first)
            state = run_engine(engine, state, patterns, ctx)
            watchers.engine_finished(index, engine, state)
    except BaseException as exc:
        watchers.run_finished(state, exc)
        raise
    watchers.run_finished(state, None)
    return state if train is None else with_held_out_positions(state, full_state, train)


def _prepare(
    state: ReconsState,
    index: int,
    engine: Any,
    plan: ReconsPlan,
    patterns: np.ndarray,
    rng: np.random.Generator,
    on_its_grid: bool,
) -> tuple[ReconsState, np.ndarray]:
    """``state`` and the patterns brought to engine ``index``.

    ``on_its_grid``: the state was saved inside this engine (a resumed run), so it is on this
    engine's grid already; the engines up to and including this one give the data's pixel.
    """
    state.engine_index = index + 1 if on_its_grid else index
    state, patterns = prepare_for_engine(state, engine, plan, patterns, rng)
    state.engine_index = index
    return state, patterns


def select_positions(state: ReconsState, indices: Any) -> ReconsState:
    """``state`` restricted to the positions ``indices`` (no longer a raster: ``scan_shape`` None)."""
    return state.copy_with(
        positions_A=np.asarray(state.positions_A)[indices],
        initial_positions_A=np.asarray(state.initial_positions_A)[indices],
        tilt_mrad=np.asarray(state.tilt_mrad)[indices],
        scan_shape=None,
    )


def with_held_out_positions(trained: ReconsState, full: ReconsState, train: np.ndarray) -> ReconsState:
    """``trained`` (run on positions ``train`` of ``full``) with every position of ``full`` again:
    the held-out ones at their initial place plus the trained positions' mean refinement."""
    trained_positions = to_numpy(trained.positions_A).astype(np.float64)
    drift = np.mean(trained_positions - np.asarray(trained.initial_positions_A), axis=0)
    positions = np.asarray(full.initial_positions_A, dtype=np.float64) + drift
    positions[train] = trained_positions
    tilt = np.asarray(to_numpy(full.tilt_mrad), dtype=np.float64).copy()
    tilt[train] = to_numpy(trained.tilt_mrad)
    return trained.copy_with(
        positions_A=positions,
        initial_positions_A=np.asarray(full.initial_positions_A),
        tilt_mrad=tilt,
        scan_shape=full.scan_shape,
    )


def output_dir(plan: ReconsPlan, base: Path | None = None) -> Path:
    """The run's output folder: the first engine's ``save_options.out_dir`` with ``{name}`` filled."""
    pattern = plan.engines[0].save_options.out_dir
    folder = Path(pattern.format(name=plan.name))
    return folder if folder.is_absolute() or base is None else base / folder
