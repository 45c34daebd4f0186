"""One trial: sampled parameters -> concrete plan -> reconstruction -> metrics, attributes, artifacts.

An invalid concrete plan fails its trial with the message stored; divergence prunes it with its
reason stored; any other error fails it with a one-line reason; the study goes on in each case.
The dataset (and the truth) are read once per worker and reused while the file is unchanged.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import resource
import socket
import sys
import time
from importlib import metadata
from typing import Any

import numpy as np
import optuna
import yaml

from phaser.backend import make_rng
from phaser.plan import PlanError, dump_plan, validate_plan
from phaser.run import LoadedData, load_data, run_plan
from phaser_opt.data import fingerprint
from phaser_opt.reporter import Diverged, TrialReporter
from phaser_opt.scoring import MetricError, TrialRun, all_truth_scores, metric_value
from phaser_opt.study import LoadedStudy
from phaser_opt.truth import Truth

logger = logging.getLogger("phaser_opt")

# Attribute keys a trial stores (also read by the dashboard note, the report and `best`).
FAIL_REASON = "fail_reason"
PRUNE_REASON = "prune_reason"
PLAN_YAML = "plan_yaml"
INTERRUPTED = "interrupted"  # the start of a Ctrl-C'd trial's fail reason


class TrialFailed(RuntimeError):
    """A trial that cannot give a value (invalid plan, failing metric); its reason is stored."""


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """The exception as one line: its type and its message's lines joined (a plan's problems stay)."""
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def package_versions() -> dict[str, str]:
    """Versions of the packages a trial's result depends on."""
    names = ("phaser", "optuna", "jax", "jaxlib", "optax", "numpy")
    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far [MB] (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class DataCache:
    """Loaded datasets of one worker, keyed by the loading part of the plan and the file's fingerprint."""

    def __init__(self) -> None:
        self._entries: dict[str, LoadedData] = {}
        self.loads = 0

    def get(self, plan: Any) -> tuple[LoadedData, str | None]:
        """The plan's data (loaded on first use) and the data file's fingerprint."""
        path = getattr(plan.raw_data.props, "path", None)
        digest = fingerprint(path) if path is not None and path.is_file() else None
        loading = {"raw_data": plan.raw_data.to_plan(), "post_load": [h.to_plan() for h in plan.post_load]}
        key = json.dumps([loading, digest, plan.seed], sort_keys=True, default=str)
        if key not in self._entries:
            self._entries.clear()  # one dataset at a time: a study has one
            self._entries[key] = load_data(plan, make_rng(plan.seed))
            self.loads += 1
        return self._entries[key], digest


class StudyObjective:
    """The callable given to ``study.optimize``: runs one trial and returns its value(s)."""

    def __init__(self, study: LoadedStudy, truth: Truth | None, artifacts: Any = None):
        self.study = study
        self.truth = truth
        self.artifacts = artifacts
        self.data_cache = DataCache()
        self.heldout_options = next((o.options for o in study.spec.objectives if o.metric == "heldout_loss"), None)

    def concrete_plan(self, trial: optuna.Trial | optuna.trial.FixedTrial) -> dict[str, Any]:
        """The trial's concrete plan mapping (the dataset path filled in when the template has none)."""
        plan = self.study.space.sample(trial)
        if isinstance(plan, dict):
            # trials differ only in their parameters: the same random start unless the template says
            plan.setdefault("seed", 0)
        data_path = self.study.data_path
        raw = plan.get("raw_data") if isinstance(plan, dict) else None
        if data_path is not None and isinstance(raw, dict) and not raw.get("path"):
            plan["raw_data"] = {**raw, "path": str(data_path)}
        return plan

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_REASON, f"{INTERRUPTED} (Ctrl-C); the same command runs it again")
            raise
        except Exception as exc:
            trial.set_user_attr(FAIL_REASON, one_line(exc))
            logger.warning("trial %d failed: %s", trial.number, one_line(exc))
            raise

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it, for the logs
        plan_data = self.concrete_plan(trial)
        trial.set_user_attr(PLAN_YAML, yaml.safe_dump(copy.deepcopy(plan_data), sort_keys=False))
        try:
            plan = validate_plan(plan_data, f"trial {trial.number}", base=self.study.plan_base)
        except PlanError as exc:
            raise TrialFailed(f"the sampled plan is invalid: {exc}") from None
        trial.set_user_attr(PLAN_YAML, dump_plan(plan))
        data, digest = self.data_cache.get(plan)
        if digest is not None:
            trial.set_user_attr("data_fingerprint", digest)
        run = self._reconstruct(trial, plan, data)
        values = self._score(trial, run)
        if self.artifacts is not None:
            self.artifacts.record(trial, run, self.truth)
        return values[0] if len(values) == 1 else values

    def _holdout(self, n_positions: int) -> np.ndarray | None:
        if self.heldout_options is None:
            return None
        from phaser.metrics import split_holdout

        options = self.heldout_options
        return split_holdout(n_positions, float(options.get("fraction", 0.1)), int(options.get("seed", 0)))[1]

    def _reconstruct(self, trial: optuna.Trial, plan: Any, data: LoadedData) -> TrialRun:
        spec = self.study.spec
        value_fn = None
        if spec.report.value == "objective":
            first = spec.objectives[0]

            def value_fn(state: Any) -> float:
                probe = TrialRun(state, plan, 0.0, 0.0)
                return metric_value(first.metric, probe, self.truth, first.options)

        reporter = TrialReporter(
            trial,
            spec.report.every,
            spec.report.diverge_factor,
            value_fn,
            can_prune=len(spec.objectives) == 1,
        )
        heldout = self._holdout(data.patterns.shape[0])
        start = time.perf_counter()
        try:
            state = run_plan(plan, [reporter], data=data, holdout=heldout)
        except (Diverged, FloatingPointError) as exc:
            trial.set_user_attr(PRUNE_REASON, f"diverged: {exc}")
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        except optuna.TrialPruned as exc:
            trial.set_user_attr(PRUNE_REASON, str(exc))
            raise
        wall = time.perf_counter() - start
        trial.set_user_attr("wall_time_s", round(wall, 3))
        trial.set_user_attr("iterations", int(state.iteration))
        trial.set_user_attr("reports", reporter.reports)

        def rerun(holdout: np.ndarray) -> Any:
            return run_plan(plan, [], data=data, holdout=holdout)

        return TrialRun(state, plan, wall, peak_memory_mb(), data.patterns, heldout, rerun)

    def _score(self, trial: optuna.Trial, run: TrialRun) -> list[float]:
        values = []
        for objective in self.study.spec.objectives:
            try:
                value = metric_value(objective.metric, run, self.truth, objective.options)
            except MetricError as exc:
                raise TrialFailed(str(exc)) from None
            if math.isnan(value):
                # inf stays: a resolution of inf (the FRC never reached its threshold) is a valid worst
                raise TrialFailed(f"{objective.label}: the value is nan")
            values.append(float(value))
        metrics = {o.label: v for o, v in zip(self.study.spec.objectives, values, strict=True)}
        try:
            metrics = {**all_truth_scores(run, self.truth), **metrics}
        except (MetricError, ValueError) as exc:
            logger.warning("trial %d: truth scores beside the objectives failed: %s", trial.number, exc)
        if run.state.error_history:
            metrics.setdefault("final_error", float(run.state.error_history[-1]))
        metrics.setdefault("wall_time", run.wall_time_s)
        metrics.setdefault("peak_memory", run.peak_memory_mb)
        for name, value in metrics.items():
            trial.set_user_attr(f"metric.{name}", _json_number(value))
        trial.set_user_attr("versions", package_versions())
        return values


def _json_number(value: float) -> float | None:
    """Storage-safe: nan and inf become None."""
    return float(value) if math.isfinite(value) else None
