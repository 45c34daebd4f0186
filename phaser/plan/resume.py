"""Where a run that starts from a saved state continues: which engine, which of its iterations.

A state file records the engine it was saved in and how many of that engine's iterations were
done (:mod:`phaser.io.state_file`). Resuming runs that engine from the next iteration, with its
schedules and update flags at that iteration, then the engines after it; ``init.resume`` says
whether to (see :class:`phaser.plan.schema.InitPlan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from phaser.io.state_file import StateFileError, StateHeader

# engine fields that say what to write, not what to compute: a resumed run may change them
_OUTPUT_FIELDS = ("save", "save_images", "save_options")


@dataclass(frozen=True)
class ResumePoint:
    """Run ``plan.engines[engine_index]`` from iteration ``first_iteration`` (1-based) on."""

    engine_index: int
    first_iteration: int
    state_engine_index: int
    """The engine whose grid the state is on (the one it was saved in)."""


def resume_point(plan: Any, header: StateHeader) -> ResumePoint | None:
    """Where ``plan`` continues from the state ``header`` describes; None: from the start (0, 1).

    ``init.resume`` true continues (and raises :class:`StateFileError` when the state records no
    place in the plan or nothing is left to run); false never does; None (the default) continues
    only a state that records an unfinished run of a plan with the same engines.
    """
    choice = plan.init.resume
    if choice is False:
        return None
    recorded = _recorded(plan, header, estimate=choice is True)
    if choice is None and (recorded is None or not _same_engines(plan, header.plan_yaml)):
        return None
    path = plan.init.state
    if recorded is None:
        raise StateFileError(f"init.state: {path} records no place in a plan to resume from (init.resume: true)")
    saved_in, done = recorded
    if saved_in >= len(plan.engines):
        raise StateFileError(
            f"init.state: {path} was saved in engines[{saved_in}] but the plan has {len(plan.engines)} engine(s)"
        )
    index, finished = saved_in, done
    if done >= plan.engines[saved_in].niter:
        index, finished = saved_in + 1, 0
    if index >= len(plan.engines):
        if choice is None:
            return None  # a finished run of this plan: start again from its final state
        raise StateFileError(
            f"init.state: {path} is the end of the run (engines[{saved_in}] finished, {header.iteration} "
            "iterations): nothing is left to resume; raise an engine's niter or set init.resume: false"
        )
    return ResumePoint(index, finished + 1, saved_in)


def _recorded(plan: Any, header: StateHeader, estimate: bool) -> tuple[int, int] | None:
    """(engine, iterations of it done) as recorded; with ``estimate``, else from the total count."""
    if header.engine_index is not None and header.engine_iteration is not None:
        return header.engine_index, header.engine_iteration
    if not estimate:
        return None
    # a file from before the place was recorded: assume every engine ran its niter
    remaining = header.iteration
    for index, engine in enumerate(plan.engines):
        if remaining < engine.niter:
            return index, remaining
        remaining -= engine.niter
    return len(plan.engines) - 1, plan.engines[-1].niter


def _same_engines(plan: Any, plan_yaml: str | None) -> bool:
    """Whether the plan stored in a state file has ``plan``'s engines (output settings aside)."""
    if not plan_yaml:
        return False
    from phaser.plan.load import plan_to_data

    try:
        stored = yaml.safe_load(plan_yaml).get("engines")
    except (yaml.YAMLError, AttributeError):
        return False
    current = plan_to_data(plan)["engines"]
    if not isinstance(stored, list) or len(stored) != len(current):
        return False
    strip = [{k: v for k, v in e.items() if k not in _OUTPUT_FIELDS} for e in current]
    return strip == [{k: v for k, v in e.items() if k not in _OUTPUT_FIELDS} for e in stored if isinstance(e, dict)]
