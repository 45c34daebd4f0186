"""Creating or resuming a study in its storage and running its trials on this process."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from phaser_opt.artifacts import ArtifactWriter
from phaser_opt.objective import FAIL_REASON, PRUNE_REASON, StudyObjective
from phaser_opt.samplers import build_pruner, build_sampler
from phaser_opt.storage import open_storage
from phaser_opt.study import LoadedStudy
from phaser_opt.truth import load_truth

logger = logging.getLogger("phaser_opt")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_study(loaded: LoadedStudy, create: bool = True) -> optuna.Study:
    """The study in its storage: created (attributes, metric names, enqueued points) the first
    time, loaded afterwards. ``create=False`` only loads (a worker joining)."""
    spec = loaded.spec
    storage = open_storage(loaded.storage_url)
    sampler, pruner = build_sampler(spec.sampler, loaded.space), build_pruner(spec.pruner)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable in practice since 3.2
        study.set_metric_names(loaded.spec.metric_names)
    study.set_user_attr("study_file", loaded.text)
    study.set_user_attr("study_path", str(loaded.path))
    study.set_user_attr("template", loaded.template_text)
    study.set_user_attr("template_source", loaded.template_source)
    for params in loaded.spec.enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": True}, skip_if_exists=True)


def finished_count(study: optuna.Study) -> int:
    """Trials that ran to an end (complete, pruned or failed): they count towards ``n_trials``."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class ProgressPrinter:
    """One line per finished trial: its state and value, the best so far, and the counts."""

    def __init__(self, n_trials: int | None, stream: TextIO = sys.stderr):
        self.n_trials = n_trials
        self.stream = stream

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
            f"trial {trial.number:>3}: {outcome}, {seconds:.1f} s | {best_text(study)} | "
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


def run_study(loaded: LoadedStudy, stream: TextIO = sys.stderr, n_trials: int | None = None) -> optuna.Study:
    """Create or resume the study and run trials until ``n_trials`` have finished in all (or the
    timeout passes). A failing trial never stops the study; Ctrl-C stops it after marking the
    running trial."""
    spec = loaded.spec
    target = n_trials if n_trials is not None else spec.n_trials
    study = open_study(loaded)
    if loaded.spec.data is not None:
        from phaser_opt.data import ensure_dataset

        made = ensure_dataset(spec.data.simulate, loaded.data_path, loaded.resolve)
        if made:
            print(f"dataset made: {made}", file=stream)
    truth = load_truth(spec.truth, loaded.resolve) if spec.truth is not None else None
    writer = ArtifactWriter(loaded.artifact_dir, spec.artifacts) if spec.artifacts.enabled else None
    objective = StudyObjective(loaded, truth, writer)
    remaining = None if target is None else max(target - finished_count(study), 0)
    callbacks: list[Any] = [ProgressPrinter(target, stream)]
    if writer is not None:
        callbacks.append(lambda s, t: _refresh_gallery(writer, s, t))
    if target is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(target, states=FINISHED))
    if remaining == 0:
        print(f"study {spec.name!r} already has {target} finished trials", file=stream)
        return study
    started = time.perf_counter()
    print(f"study {spec.name!r}: {remaining or 'unlimited'} trial(s) to run, storage {loaded.storage_url}", file=stream)
    study.optimize(
        objective,
        n_trials=remaining,
        timeout=spec.timeout,
        catch=(Exception,),
        callbacks=callbacks,
        gc_after_trial=False,
    )
    logger.info("study ran for %.1f s", time.perf_counter() - started)
    return study


def _refresh_gallery(writer: ArtifactWriter, study: optuna.Study, trial: FrozenTrial) -> None:
    if trial.state != TrialState.COMPLETE:
        return
    try:
        writer.refresh_gallery(study, trial)
    except Exception as exc:  # noqa: BLE001 - the gallery is a view; a failure must not stop the study
        logger.warning("could not refresh the gallery: %s", exc)
