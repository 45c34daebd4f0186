"""The output observer: checkpoints (HDF5), images and the resolved plan of a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phaser.io.images import write_state_images
from phaser.io.state_file import save_state
from phaser.observers import Observer
from phaser.plan.load import dump_plan
from phaser.schedules import flag_at, flag_ever
from phaser.state import ReconsState

logger = logging.getLogger("phaser")


class OutputObserver(Observer):
    """Saves per the engines' ``save``/``save_images`` flags, at each engine's end, and on failure.

    The resolved plan is written as ``plan.yaml`` in the output folder before the first engine,
    and the final state as ``final.h5``; an interrupted or failed run still leaves the last
    complete state (``interrupted.h5``) behind.
    """

    def __init__(self, plan: Any, out_dir: Path):
        self.plan = plan
        self.out_dir = out_dir
        self.plan_yaml = dump_plan(plan)
        self.engine: Any = None
        self.engine_iterations_done: int | None = None  # of the running engine, recorded for resuming
        self.written: list[Path] = []

    def _save(self, state: ReconsState, filename: str) -> Path:
        path = save_state(self.out_dir / filename, state, self.plan_yaml, self.engine_iterations_done)
        self.written.append(path)
        return path

    def _images(self, state: ReconsState) -> None:
        opts = self.engine.save_options
        self.written += write_state_images(
            self.out_dir, state, opts.images, opts.img_fmt, opts.plot_ext, opts.crop_roi, dpi=opts.plot_dpi
        )

    def run_started(self, plan: Any, state: ReconsState) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "plan.yaml").write_text(self.plan_yaml)

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        self.engine = engine
        self.engine_iterations_done = 0

    def engine_resumed(self, index: int, engine: Any, state: ReconsState, first_iteration: int) -> None:
        self.engine_iterations_done = first_iteration - 1

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        self.engine_iterations_done = i
        opts = self.engine.save_options
        save, images = flag_at(self.engine.save, i), flag_at(self.engine.save_images, i)
        if save or images:
            sync()
        if save:
            self._save(state, opts.hdf5_fmt.format(iter=state.iteration, name=self.plan.name))
        if images:
            self._images(state)
        return False

    def engine_finished(self, index: int, engine: Any, state: ReconsState) -> None:
        self.engine_iterations_done = engine.niter  # done, also when it stopped early
        niter = max(engine.niter, 1)
        if flag_ever(engine.save, niter):
            self._save(state, engine.save_options.hdf5_fmt.format(iter=state.iteration, name=self.plan.name))
        if flag_ever(engine.save_images, niter):
            self._images(state)

    def run_finished(self, state: ReconsState, error: BaseException | None) -> None:
        if error is None:
            path = self._save(state, "final.h5")
            if self.engine is not None:
                self._images(state)
            logger.info("final state written to %s", path)
        else:
            try:
                path = self._save(state, "interrupted.h5")
                logger.warning("run stopped (%s); last state written to %s", type(error).__name__, path)
            except Exception as exc:  # noqa: BLE001 - never mask the original error
                logger.error("could not save the state after %s: %s", type(error).__name__, exc)
