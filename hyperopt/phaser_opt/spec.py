"""The study file: which template to sample, how to score a trial, and where trials are kept.

A study file is YAML (versioned like plans, unknown keys refused, every problem reported at once
with its field path). Relative paths are relative to the study file. The template may be a path
or written inline; either way its search-space annotations (``!float``, ``!int``, ``!choice``)
are read by :mod:`phaser_opt.space`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from phaser.plan.load import validation_problems
from phaser.plan.messages import PlanError

STUDY_SCHEMA_VERSION = "1.0"

# Direction of each built-in metric when the study file does not say (custom metrics must say).
DEFAULT_DIRECTIONS = {
    "mse": "minimize",
    "ssim": "maximize",
    "frc": "minimize",
    "potential_error": "minimize",
    "heldout_loss": "minimize",
    "two_half_frc": "minimize",
    "final_error": "minimize",
    "wall_time": "minimize",
    "peak_memory": "minimize",
}
TRUTH_METRICS = ("mse", "ssim", "frc", "potential_error")


class StudyError(PlanError):
    """A study that cannot run; ``problems`` lists ``(field path, message)`` pairs."""

    subject = "study"


class SpecModel(BaseModel):
    """Base of the study models: immutable, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveSpec(SpecModel):
    """One value a trial is scored by: a built-in metric name or ``package.module:function``."""

    metric: str = Field(min_length=1)
    direction: Literal["minimize", "maximize"] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_metric(self) -> ObjectiveSpec:
        if self.metric not in DEFAULT_DIRECTIONS and ":" not in self.metric:
            known = ", ".join(DEFAULT_DIRECTIONS)
            raise ValueError(f"metric {self.metric!r} is not one of {known}, nor a package.module:function")
        if ":" in self.metric and self.direction is None:
            raise ValueError(f"custom metric {self.metric!r} needs a direction (minimize or maximize)")
        return self

    @property
    def resolved_direction(self) -> str:
        """The direction as written, else the metric's default."""
        if self.direction is not None:
            return self.direction
        if self.metric == "frc" and self.options.get("mode") == "auc":
            return "maximize"  # area under the FRC curve: more correlation is better
        return DEFAULT_DIRECTIONS[self.metric]

    @property
    def label(self) -> str:
        """The name under which the value is stored (``study.set_metric_names``)."""
        return self.metric.rsplit(":", 1)[-1]


class SamplerSpec(SpecModel):
    """Optuna sampler by name with its keyword options (checked by building it)."""

    type: Literal["tpe", "gp", "cmaes", "random", "qmc", "grid", "nsga2"] = "tpe"
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class PrunerSpec(SpecModel):
    """Optuna pruner by name with its keyword options; ``none`` never prunes."""

    type: Literal["median", "percentile", "hyperband", "successive_halving", "patient", "threshold", "none"] = "median"
    options: dict[str, Any] = Field(default_factory=dict)


class ReportSpec(SpecModel):
    """What a trial reports while it runs (each report is one database commit): every ``every``
    iterations, the run's ``error`` or the first ``objective``'s value on the current state."""

    every: int = Field(5, ge=1)
    value: Literal["error", "objective"] = "error"
    diverge_factor: float = Field(
        10.0, gt=1, description="an error this many times the first one counts as divergence (pruned)"
    )


class DataSpec(SpecModel):
    """The dataset; made with ``phaser simulate`` from ``simulate`` (its options) when absent."""

    path: Path
    simulate: dict[str, Any] | None = None


class TruthSpec(SpecModel):
    """The ground truth: a file from ``phaser simulate``, a specimen, or a projected potential."""

    file: Path | None = None
    specimen: Path | None = None
    potential: Path | None = None
    key: str | None = Field(None, description="array name inside a .npz potential")
    sampling_A: tuple[float, float] | None = Field(None, description="pixel size [A] of a .npy/.npz potential")
    slice_thickness_A: float | None = Field(None, gt=0, description="truth slice thickness [A] (specimen)")

    @model_validator(mode="after")
    def _one_source(self) -> TruthSpec:
        given = [name for name in ("file", "specimen", "potential") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of file, specimen, potential (got {', '.join(given) or 'none'})")
        if self.potential is not None and self.sampling_A is None:
            raise ValueError("a potential array needs its pixel size: sampling_A: [dy, dx] (A)")
        return self


ImageArtifact = Literal["object_phase", "slices", "probe", "error", "frc", "difference", "plan"]


class ArtifactsSpec(SpecModel):
    """Files kept per trial in the artifact store (shown by optuna-dashboard on the trial page)."""

    enabled: bool = True
    dir: Path | None = Field(None, description="artifact folder (default: <study name>_artifacts beside the file)")
    images: tuple[ImageArtifact, ...] = ("object_phase", "slices", "probe", "error", "frc", "difference", "plan")
    state: bool = Field(False, description="also keep the final state (.h5)")
    max_state_mb: float = Field(50.0, gt=0, description="a larger state file is not kept [MB]")
    gallery_top: int = Field(8, ge=0, description="trials in the study page's gallery (0: none)")
    dpi: int = Field(100, ge=30, le=600)


class HeartbeatSpec(SpecModel):
    """Heartbeats mark a dead worker's trial FAIL; the retry re-runs it with the same parameters."""

    interval: int = Field(60, ge=1, description="seconds between a running trial's heartbeats")
    grace_period: int | None = Field(None, ge=1, description="seconds without one before FAIL")
    max_retry: int = Field(2, ge=0, description="re-runs of a failed trial")


class StudySpec(SpecModel):
    """A hyperparameter study over a plan template."""

    version: Literal["1.0"] = STUDY_SCHEMA_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    template: Path | dict[str, Any]
    data: DataSpec | None = None
    truth: TruthSpec | None = None
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    report: ReportSpec = ReportSpec()
    n_trials: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, description="seconds")
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    storage: str | None = Field(None, description="SQLAlchemy URL (default: sqlite file beside the study)")
    artifacts: ArtifactsSpec = ArtifactsSpec()
    heartbeat: HeartbeatSpec = HeartbeatSpec()

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("give n_trials, timeout or both, so the study ends")
        needs_truth = [o.metric for o in self.objectives if o.metric in TRUTH_METRICS]
        if needs_truth and self.truth is None:
            raise ValueError(f"objective {needs_truth[0]!r} compares with a ground truth: add `truth:`")
        labels = [o.label for o in self.objectives]
        if len(set(labels)) != len(labels):
            raise ValueError(f"objectives: a metric appears twice ({', '.join(labels)})")
        if len(self.objectives) > 1 and self.pruner.type != "none":
            raise ValueError("pruner: Optuna cannot prune a study with several objectives; use `pruner: {type: none}`")
        if self.report.value == "objective" and self.pruner.type == "none":
            # the objective mid-run costs an alignment per report, and only a pruner reads it
            raise ValueError("report.value: objective feeds the pruner; with `pruner: {type: none}` use `value: error`")
        if self.report.value == "objective" and self.objectives[0].metric in ("heldout_loss", "two_half_frc"):
            raise ValueError("report.value: objective needs a metric of the current state; use `value: error`")
        if len(self.objectives) > 1 and self.sampler.type in ("gp", "cmaes"):
            raise ValueError(f"sampler: {self.sampler.type} optimises one objective; use nsga2, tpe or random")
        return self

    @property
    def directions(self) -> list[str]:
        """The direction of each objective, in order."""
        return [o.resolved_direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """The stored name of each objective, in order."""
        return [o.label for o in self.objectives]


def validate_spec(data: Any, source: str) -> StudySpec:
    """Validate a study mapping; raises :class:`StudyError` listing every problem."""
    if not isinstance(data, dict):
        raise StudyError(source, [("", f"expected a mapping of study fields, got {type(data).__name__}")])
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise StudyError(source, validation_problems(exc, data)) from None
