"""Creating or resuming a study in its storage and running its trials on this process."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import InterfaceError, OperationalError

from phaser_opt.artifacts import ArtifactWriter
from phaser_opt.objective import FAIL_REASON, INTERRUPTED, PRUNE_REASON, StudyObjective
from phaser_opt.samplers import build_pruner, build_sampler
from phaser_opt.storage import mask_secrets, masked_url, open_storage
from phaser_opt.study import LoadedStudy
from phaser_opt.truth import load_truth

logger = logging.getLogger("phaser_opt")


@contextlib.contextmanager
def stable_in_practice() -> Iterator[None]:
    """Silence Optuna's experimental-feature notices: heartbeats, their retry callback and
    stale-trial failing are what crash recovery is built on, so users need not see them each time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
WAIT_POLL_S = 2.0  # how often a worker with nothing to start looks at the others' trials [s]


def study_storage(loaded: LoadedStudy) -> optuna.storages.RDBStorage:
    """The study's storage with heartbeats: a trial whose worker stops beating for the grace
    period is marked FAIL and re-queued with the same parameters, up to ``max_retry`` times."""
    beat = loaded.spec.heartbeat
    with stable_in_practice():
        return open_storage(
            loaded.storage_url,
            heartbeat_interval=beat.interval,
            grace_period=beat.grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=beat.max_retry),
        )


def worker_sampler_spec(sampler_spec: Any, worker_index: int) -> Any:
    """Worker ``k``'s sampler: the study's seed plus ``k``, so seeded workers do not draw the same
    random start-up points (worker 0 keeps the study's seed: a one-process study reproduces)."""
    if sampler_spec.seed is None or worker_index == 0:
        return sampler_spec
    return sampler_spec.model_copy(update={"seed": sampler_spec.seed + worker_index})


def open_study(loaded: LoadedStudy, create: bool = True, worker_index: int = 0) -> optuna.Study:
    """The study in its storage: created (attributes, metric names, enqueued points) the first
    time, loaded afterwards. ``create=False`` only loads (a worker joining)."""
    spec = loaded.spec
    storage = study_storage(loaded)
    sampler = build_sampler(worker_sampler_spec(spec.sampler, worker_index), loaded.space)
    pruner = build_pruner(spec.pruner)
    if not create:
        try:
            return optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise ValueError(f"study {spec.name!r} does not exist in {loaded.storage_url}: start it first") from None
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=spec.directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != spec.directions:
        raise ValueError(
            f"study {spec.name!r} in its storage has directions {[d.name.lower() for d in study.directions]}, "
            f"the study file {spec.directions}: give the study another name"
        )
    if "study_file" not in study.user_attrs:
        _initialise(study, loaded)
    return study


def _initialise(study: optuna.Study, loaded: LoadedStudy) -> None:
    with stable_in_practice():
        study.set_metric_names(loaded.spec.metric_names)
    study.set_user_attr("study_file", loaded.text)
    study.set_user_attr("study_path", str(loaded.path))
    study.set_user_attr("template", loaded.template_text)
    study.set_user_attr("template_source", loaded.template_source)
    for params in loaded.spec.enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)


def is_interrupted(trial: FrozenTrial) -> bool:
    """A trial stopped by Ctrl-C (not by its own failure): it is run again on resume."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get(FAIL_REASON, "").startswith(INTERRUPTED)


def finished_count(study: optuna.Study) -> int:
    """Trials that ran to an end and count towards ``n_trials``: complete, pruned or failed, but
    not those interrupted by Ctrl-C nor those whose worker died and that a retry replaces."""
    trials = study.get_trials(deepcopy=False)
    with stable_in_practice():
        retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return sum(t.state in FINISHED and not is_interrupted(t) and t.number not in retried for t in trials)


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again, with the same parameters, the trials a Ctrl-C stopped (once each; the study's
    ``requeued`` attribute remembers which); returns how many."""
    done = set(study.user_attrs.get("requeued", []))
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if is_interrupted(t)]
    fresh = [t for t in trials if t.number not in done]
    for trial in fresh:
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number}, skip_if_exists=False)
    if fresh:
        study.set_user_attr("requeued", sorted(done | {t.number for t in fresh}))
    return len(fresh)


class ProgressPrinter:
    """One line per finished trial: its state and value, the best so far, and the counts."""

    def __init__(self, n_trials: int | None, stream: TextIO | None = None, prefix: str = ""):
        self.n_trials = n_trials
        self.stream = stream or sys.stderr
        self.prefix = prefix

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        counts = {s: states.count(s) for s in FINISHED}
        seconds = trial.duration.total_seconds() if trial.duration else math.nan
        if trial.state == TrialState.COMPLETE:
            outcome = "value " + ", ".join(f"{v:.5g}" for v in trial.values)
        elif trial.state == TrialState.PRUNED:
            outcome = f"pruned ({trial.user_attrs.get(PRUNE_REASON, 'by the pruner')})"
        else:
            outcome = f"failed ({trial.user_attrs.get(FAIL_REASON, 'see the log')})"
        total = f"/{self.n_trials}" if self.n_trials else ""
        print(
            f"{self.prefix}trial {trial.number:>3}: {outcome}, {seconds:.1f} s | {best_text(study)} | "
            f"{sum(counts.values())}{total} done: {counts[TrialState.COMPLETE]} complete, "
            f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed",
            file=self.stream,
            flush=True,
        )


def best_text(study: optuna.Study) -> str:
    """``best 0.0123 (#4)``, or the size of the Pareto front, or ``no complete trial yet``."""
    try:
        if len(study.directions) > 1:
            return f"Pareto front of {len(study.best_trials)}"
        best = study.best_trial
        return f"best {best.value:.5g} (#{best.number})"
    except ValueError:
        return "no complete trial yet"


def prepare_study(loaded: LoadedStudy, stream: TextIO | None = None) -> optuna.Study:
    """Create (or load) the study, make its dataset if absent, and queue again the trials a
    Ctrl-C stopped: what one process does before any worker starts."""
    stream = stream or sys.stderr
    study = open_study(loaded)
    if loaded.spec.data is not None:
        from phaser_opt.data import ensure_dataset

        made = ensure_dataset(loaded.spec.data.simulate, loaded.data_path, loaded.resolve)
        if made:
            print(f"dataset made: {made}", file=stream)
    requeued = requeue_interrupted(study)
    if requeued:
        print(f"{requeued} interrupted trial(s) queued again with their parameters", file=stream)
    return study


def running_count(study: optuna.Study) -> int:
    """Trials running now (on any worker)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def run_trials(
    loaded: LoadedStudy,
    study: optuna.Study,
    target: int | None,
    stream: TextIO | None = None,
    prefix: str = "",
) -> optuna.Study:
    """Run trials on this process until ``target`` trials have finished or are running on other
    workers (or the study's timeout passes). One trial per ``optimize`` call, so a worker never
    starts a trial that the others already cover."""
    stream = stream or sys.stderr
    spec = loaded.spec
    truth = load_truth(spec.truth, loaded.resolve) if spec.truth is not None else None
    writer = ArtifactWriter(loaded.artifact_dir, spec.artifacts) if spec.artifacts.enabled else None
    objective = StudyObjective(loaded, truth, writer)
    callbacks: list[Any] = [ProgressPrinter(target, stream, prefix)]
    if writer is not None:
        callbacks.append(lambda s, t: _refresh_gallery(writer, s, t))
    deadline = None if spec.timeout is None else time.monotonic() + spec.timeout

    def one_step() -> bool:
        # a trial whose worker died is failed (and queued again by the retry callback) first
        with stable_in_practice():
            optuna.storages.fail_stale_trials(study)
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if target is not None:
            finished = finished_count(study)
            if finished >= target:
                return False
            if finished + running_count(study) >= target:
                # the other workers' trials cover the count; wait for them, since one whose worker
                # died goes stale and must be run again here
                time.sleep(min(spec.heartbeat.interval, WAIT_POLL_S))
                return True
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=False)
        return True

    while with_storage_retries(one_step, study, loaded.storage_url, stream):
        pass
    return study


class StorageLost(RuntimeError):
    """The database stayed unreachable through every retry; the running trial is left to the heartbeat."""


# Seconds to wait before each new attempt when the database connection is lost (about 2 minutes in all).
STORAGE_RETRY_WAITS = (1, 2, 4, 8, 16, 32, 64)


def with_storage_retries(step: Any, study: optuna.Study, url: str, stream: TextIO) -> Any:
    """``step()``, retried with backoff while the database cannot be reached. A trial whose result
    could not be written stays RUNNING; its heartbeat goes stale and another worker re-runs it with
    the same parameters, so no half-written trial is ever kept."""
    for wait in (*STORAGE_RETRY_WAITS, None):
        try:
            return step()
        except (OperationalError, InterfaceError) as exc:
            reason = mask_secrets(str(exc).strip().splitlines()[0], url)
            if wait is None:
                raise StorageLost(
                    f"lost the database {masked_url(url)} ({reason}); gave up after {len(STORAGE_RETRY_WAITS)} "
                    "retries. The running trial, if any, is re-run by another worker once its heartbeat is stale."
                ) from None
            print(f"database unreachable ({reason}); retrying in {wait} s", file=stream, flush=True)
            time.sleep(wait)
            _reconnect(study)
    return None


def _reconnect(study: optuna.Study) -> None:
    """Drop the storage's pooled connections so the next attempt opens fresh ones."""
    storage = getattr(study._storage, "_backend", study._storage)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def run_study(
    loaded: LoadedStudy, stream: TextIO | None = None, n_trials: int | None = None, workers: int = 1
) -> optuna.Study:
    """Create or resume the study and run it until ``n_trials`` (default: the study's) have
    finished, here or in ``workers`` worker processes. A failing trial never stops the study;
    Ctrl-C marks the running trial as interrupted, and the same command runs it again."""
    stream = stream or sys.stderr
    target = n_trials if n_trials is not None else loaded.spec.n_trials
    study = prepare_study(loaded, stream)
    remaining = None if target is None else max(target - finished_count(study), 0)
    if target == 0:
        print(f"study {loaded.spec.name!r} is ready in {masked_url(loaded.storage_url)}; workers may join", file=stream)
        return study
    if remaining == 0:
        print(f"study {loaded.spec.name!r} already has {target} finished trials", file=stream)
        return study
    where = f"{workers} worker processes" if workers > 1 else "this process"
    print(
        f"study {loaded.spec.name!r}: {remaining or 'unlimited'} trial(s) to run on {where}, "
        f"storage {masked_url(loaded.storage_url)}",
        file=stream,
    )
    if workers > 1:
        from phaser_opt.workers import run_worker_processes

        run_worker_processes(loaded.path, workers, target, stream)
        return open_study(loaded)
    return run_trials(loaded, study, target, stream)


def _refresh_gallery(writer: ArtifactWriter, study: optuna.Study, trial: FrozenTrial) -> None:
    if trial.state != TrialState.COMPLETE:
        return
    try:
        writer.refresh_gallery(study)
    except Exception as exc:  # noqa: BLE001 - the gallery is a view; a failure must not stop the study
        logger.warning("could not refresh the gallery: %s", exc)
