"""The observer that ties a reconstruction to its Optuna trial: reports, pruning, divergence."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna

from phaser.observers import Observer
from phaser.state import ReconsState


class Diverged(RuntimeError):
    """The run's error became non-finite or grew past the allowed factor; the trial is pruned."""


class TrialReporter(Observer):
    """Reports every ``every`` iterations (step = iterations across all engines) and prunes.

    Each report is one database commit, so it is made every k iterations rather than every one.
    ``value`` is None for the run's error, else a function of the synced state (an objective).
    A non-finite error, or one ``diverge_factor`` times the first, raises :class:`Diverged`.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        every: int,
        diverge_factor: float,
        value: Callable[[ReconsState], float] | None = None,
        can_prune: bool = True,
    ):
        self.trial = trial
        self.every = every
        self.diverge_factor = diverge_factor
        self.value = value
        self.can_prune = can_prune
        self.first_error: float | None = None
        self.reports = 0

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        error = state.error_history[-1]
        if not math.isfinite(error):
            raise Diverged(f"the error became {error} at iteration {state.iteration}")
        if self.first_error is None:
            self.first_error = error
        elif error > self.diverge_factor * abs(self.first_error):
            raise Diverged(
                f"the error grew to {error:.4g} at iteration {state.iteration}, over "
                f"{self.diverge_factor:g}x the first ({self.first_error:.4g})"
            )
        if state.iteration % self.every == 0 and self.can_prune:
            self._report(state, sync)
        return False

    def _report(self, state: ReconsState, sync: Callable[[], Any]) -> None:
        if self.value is None:
            reported = state.error_history[-1]
        else:
            sync()
            reported = self.value(state)
        if not math.isfinite(reported):
            raise Diverged(f"the reported value became {reported} at iteration {state.iteration}")
        self.trial.report(reported, state.iteration)
        self.reports += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {state.iteration} (value {reported:.5g})")
