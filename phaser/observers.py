"""Observers watch a run: engines call them, and know nothing of who is watching.

An observer implements any of the methods of :class:`Observer`. ``iteration_done`` gets a
``sync`` callable that writes the engine's current variables into the state (a device-to-host
copy, so only observers that need the arrays call it) and may return True to stop the engine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from phaser.state import ReconsState

logger = logging.getLogger("phaser")


class Observer:
    """Base observer: every notification does nothing."""

    def run_started(self, plan: Any, state: ReconsState) -> None:
        """Called once the state is initialised, before the first engine."""

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        """Called before engine ``index`` runs."""

    def engine_resumed(self, index: int, engine: Any, state: ReconsState, first_iteration: int) -> None:
        """Called after :meth:`engine_started` when a resumed run continues engine ``index`` at
        iteration ``first_iteration`` (its iterations before that were done by an earlier run)."""

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        """Called after engine iteration ``i`` of ``niter``; True asks the engine to stop."""
        return False

    def engine_finished(self, index: int, engine: Any, state: ReconsState) -> None:
        """Called after engine ``index`` finished (also when it stopped early)."""

    def run_finished(self, state: ReconsState, error: BaseException | None) -> None:
        """Called at the end of the run, with the exception that ended it, if any."""


class ObserverSet(Observer):
    """Fans every notification out to a list of observers."""

    def __init__(self, observers: Iterable[Observer] = ()):
        self.observers = list(observers)

    def run_started(self, plan: Any, state: ReconsState) -> None:
        for obs in self.observers:
            obs.run_started(plan, state)

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        for obs in self.observers:
            obs.engine_started(index, engine, state)

    def engine_resumed(self, index: int, engine: Any, state: ReconsState, first_iteration: int) -> None:
        for obs in self.observers:
            obs.engine_resumed(index, engine, state, first_iteration)

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        # every observer hears of every iteration, even after one has asked to stop
        return any([obs.iteration_done(state, sync, i, niter) for obs in self.observers])

    def engine_finished(self, index: int, engine: Any, state: ReconsState) -> None:
        for obs in self.observers:
            obs.engine_finished(index, engine, state)

    def run_finished(self, state: ReconsState, error: BaseException | None) -> None:
        for obs in self.observers:
            obs.run_finished(state, error)


class LoggingObserver(Observer):
    """Logs each iteration's error at INFO level."""

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        logger.info("engine %d (%s): %d iterations", index, engine.type, engine.niter)

    def engine_resumed(self, index: int, engine: Any, state: ReconsState, first_iteration: int) -> None:
        logger.info("engine %d resumed at iteration %d of %d", index, first_iteration, engine.niter)

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        logger.info("iteration %d/%d (total %d): error %.6g", i, niter, state.iteration, state.error_history[-1])
        return False


class ProgressObserver(Observer):
    """A live progress bar per engine with the current error, and a final summary line."""

    def __init__(self, stream: Any = None):
        self.stream = stream
        self._bar: Any = None

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=engine.niter,
            desc=f"engine {index} ({engine.type})",
            unit="iter",
            file=self.stream,
            leave=True,
            dynamic_ncols=True,
        )

    def engine_resumed(self, index: int, engine: Any, state: ReconsState, first_iteration: int) -> None:
        if self._bar is not None:
            # the iterations an earlier run did count as done, not as done fast
            self._bar.reset()
            self._bar.n = self._bar.last_print_n = self._bar.initial = first_iteration - 1
            self._bar.refresh()

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        if self._bar is not None:
            self._bar.set_postfix_str(f"error {state.error_history[-1]:.5g}")
            self._bar.update(i - self._bar.n)  # the engine's own count: true after a resume
        return False

    def engine_finished(self, index: int, engine: Any, state: ReconsState) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def run_finished(self, state: ReconsState, error: BaseException | None) -> None:
        if self._bar is not None:
            self._bar.close()
        if error is None and state.error_history:
            first, last = state.error_history[0], state.error_history[-1]
            # the summary goes to stdout (the bar to its stream), so it survives `2>/dev/null`
            print(f"finished: {state.iteration} iterations, error {first:.5g} -> {last:.5g}")


class EarlyTermination(Observer):
    """Stops an engine after ``patience`` iterations without a new best (smoothed) error."""

    def __init__(self, patience: int, smoothing: float = 0.9):
        self.patience = patience
        self.smoothing = smoothing
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf
        self.smoothed: float | None = None
        self.since_best = 0

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        self._reset()

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        error = state.error_history[-1]
        # exponential smoothing: a small factor averages over ~1/factor iterations
        self.smoothed = (
            error if self.smoothed is None else self.smoothing * error + (1 - self.smoothing) * self.smoothed
        )
        if self.smoothed < self.best:
            self.best, self.since_best = self.smoothed, 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience


class CallbackObserver(Observer):
    """Calls ``callback(state, i, niter)`` after each iteration; a True result stops the engine."""

    def __init__(self, callback: Callable[[ReconsState, int, int], Any]):
        self.callback = callback

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        return bool(self.callback(state, i, niter))
