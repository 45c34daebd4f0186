"""The timing observer the benchmark workers attach to a run: wall and CPU clocks per iteration.

Defined in a function so that ``phaser`` is imported only in the worker process, from whichever
source tree its ``PYTHONPATH`` puts first (``speed_conventional.py`` times earlier trees too).
"""

from __future__ import annotations

import time
from typing import Any


def make_iteration_timer() -> Any:
    """An observer recording ``perf_counter`` and ``process_time`` at engine start and after every iteration."""
    from phaser.observers import Observer

    class IterationTimer(Observer):
        """Clock readings of one engine (the last one started)."""

        def __init__(self) -> None:
            self.engine_start_s = self.engine_start_cpu_s = 0.0
            self.iteration_end_s: list[float] = []
            self.iteration_end_cpu_s: list[float] = []

        def engine_started(self, index: int, engine: Any, state: Any) -> None:
            self.engine_start_s, self.engine_start_cpu_s = time.perf_counter(), time.process_time()

        def iteration_done(self, state: Any, sync: Any, i: int, niter: int) -> bool:
            self.iteration_end_s.append(time.perf_counter())
            self.iteration_end_cpu_s.append(time.process_time())
            return False

    return IterationTimer()
