"""The plan schema: typed, frozen pydantic models validated before anything runs.

Field names and meanings follow the plan format of the original phaser package (``phaserem`` 0.3):
a plan written for it runs here with the same meaning for every feature both have. Extensions
are additive (``seed``, ``gaussian`` noise, schedules of type ``cosine``/``exponential``, and
lists such as ``regularizers`` may be left out instead of written ``[]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import phaser.plan.registry  # noqa: F401  (fills the hook registry before the fields are built)
from phaser.hooks import Hook
from phaser.plan.hook_types import hook_field
from phaser.schedules import Flag, SimpleFlag, flag_ever

SCHEMA_VERSION = "1.0"
RECONS_VARS = ("object", "probe", "positions", "tilt")


class PlanModel(BaseModel):
    """Base of the plan models: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class SliceList(PlanModel):
    """Slices of the given thicknesses [A]."""

    thicknesses: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)


class SliceStep(PlanModel):
    """``n`` slices of ``slice_thickness`` [A] each."""

    n: int = Field(ge=1)
    slice_thickness: float = Field(ge=0)


class SliceTotal(PlanModel):
    """``n`` equal slices adding up to ``total_thickness`` [A]."""

    n: int = Field(ge=1)
    total_thickness: float = Field(ge=0)


Slices = SliceList | SliceStep | SliceTotal


def slice_thicknesses(slices: Slices | None) -> list[float]:
    """Thicknesses [A] of ``slices``; ``None`` is one slice of thickness 0."""
    if slices is None:
        return [0.0]
    if isinstance(slices, SliceList):
        return list(slices.thicknesses)
    if isinstance(slices, SliceStep):
        return [slices.slice_thickness] * slices.n
    return [slices.total_thickness / slices.n] * slices.n


class InitPlan(PlanModel):
    """How probe, scan and object start; ``state`` resumes from a saved HDF5 state."""

    state: Path | None = None
    scan: hook_field("scan") | None = None  # type: ignore[valid-type]
    probe: hook_field("probe") | None = None  # type: ignore[valid-type]
    object: hook_field("object") | None = None  # type: ignore[valid-type]
    tilt: hook_field("tilt") | None = None  # type: ignore[valid-type]

    @field_validator("scan", "probe", "tilt", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value


ImageType = Literal[
    "probe",
    "probe_mag",
    "probe_recip",
    "probe_recip_mag",
    "object_phase_stack",
    "object_phase_sum",
    "object_mag_stack",
    "object_mag_sum",
    "scan",
    "tilt",
]


class SaveOptions(PlanModel):
    """What to write and where (``{name}`` is the plan name, ``{iter}`` the total iteration)."""

    images: tuple[ImageType, ...] = ("probe", "object_phase_stack")
    crop_roi: bool = True
    unwrap_phase: bool = False
    img_dtype: Literal["float", "8bit", "16bit", "32bit"] = "16bit"
    plot_ext: str = "png"
    plot_dpi: int = Field(150, ge=10)
    out_dir: str = "{name}"
    img_fmt: str = "{type}_iter{iter:03}.{ext}"
    hdf5_fmt: str = "iter{iter:03}.h5"


class EnginePlanBase(PlanModel):
    """Settings every engine shares."""

    niter: int = Field(10, ge=0)
    sim_shape: tuple[int, int] | None = None
    resize_method: Literal["pad_crop", "resample"] = "pad_crop"
    probe_modes: int = Field(1, ge=1)
    base_mode_power: float = Field(0.7, gt=0, lt=1)
    bwlim_frac: float | None = Field(2 / 3, gt=0)
    obj_pad_px: float = Field(5.0, ge=0)
    slices: Slices | None = None
    grouping: int | None = Field(None, ge=1)
    compact: bool = False
    shuffle_groups: Flag | None = None
    # accepted for compatibility with the original format; all patterns stay on the device here
    buffer_n_groups: int | None = None
    jit_unroll_slices: bool | int | None = None
    check_every_group: bool = False
    send_every_group: bool = False
    update_probe: Flag = True
    update_object: Flag = True
    update_positions: Flag = False
    update_tilt: Flag = False
    calc_error: Flag = SimpleFlag(every=1)
    calc_error_fraction: float = Field(0.1, gt=0, le=1)
    save: Flag = False
    save_images: Flag = False
    save_options: SaveOptions = SaveOptions()
    early_termination: int | None = Field(None, ge=1)
    early_termination_smoothing: float = Field(0.9, gt=0, le=1)
    mtf: None = Field(None, description="detector MTF: not supported yet")

    def update_flags(self) -> dict[str, Flag]:
        """The update flag of each reconstruction variable."""
        return {
            "object": self.update_object,
            "probe": self.update_probe,
            "positions": self.update_positions,
            "tilt": self.update_tilt,
        }


def _split_vars(key: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in key.split(","))
    unknown = sorted(names - set(RECONS_VARS))
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))} is not one of {', '.join(RECONS_VARS)}")
    return names


class GradientEnginePlan(EnginePlanBase):
    """Gradient descent with autodiff (JAX) and one optax solver per variable."""

    type: Literal["gradient"] = "gradient"
    noise_model: hook_field("noise_model")  # type: ignore[valid-type]
    solvers: dict[str, hook_field("gradient_solver")]  # type: ignore[valid-type]
    regularizers: list[hook_field("cost_regularizer")] = Field(default_factory=list)  # type: ignore[valid-type]
    group_constraints: list[hook_field("group_constraint")] = Field(default_factory=list)  # type: ignore[valid-type]
    iter_constraints: list[hook_field("iter_constraint")] = Field(default_factory=list)  # type: ignore[valid-type]
    grouping: int | None = Field(64, ge=1)

    @field_validator("solvers")
    @classmethod
    def _solver_keys(cls, solvers: dict[str, Hook]) -> dict[str, Hook]:
        seen: set[str] = set()
        for key in solvers:
            names = _split_vars(key)
            twice = names & seen
            if twice:
                raise ValueError(f"{', '.join(sorted(twice))} has more than one solver")
            seen |= names
        return solvers

    @model_validator(mode="after")
    def _solver_for_each_update(self) -> GradientEnginePlan:
        covered = set().union(*(_split_vars(k) for k in self.solvers)) if self.solvers else set()
        for var, flag in self.update_flags().items():
            if flag_ever(flag, max(self.niter, 1)) and var not in covered and self.niter > 0:
                raise ValueError(f"update_{var} is on but `solvers` has no entry for {var!r}")
        return self

    def solver_for(self, var: str) -> Hook | None:
        """The solver hook that updates ``var``, if any."""
        for key, hook in self.solvers.items():
            if var in _split_vars(key):
                return hook
        return None


class ConventionalEnginePlan(EnginePlanBase):
    """ePIE or LSQML: analytic updates from the noise model's wavefront correction."""

    type: Literal["conventional"] = "conventional"
    noise_model: hook_field("noise_model")  # type: ignore[valid-type]
    solver: hook_field("conventional_solver")  # type: ignore[valid-type]
    position_solver: hook_field("position_solver") | None = None  # type: ignore[valid-type]
    group_constraints: list[hook_field("group_constraint")] = Field(default_factory=list)  # type: ignore[valid-type]
    iter_constraints: list[hook_field("iter_constraint")] = Field(default_factory=list)  # type: ignore[valid-type]
    grouping: int | None = Field(16, ge=1)

    @model_validator(mode="after")
    def _tilt_not_refined(self) -> ConventionalEnginePlan:
        if self.niter > 0 and flag_ever(self.update_tilt, self.niter):
            raise ValueError("update_tilt: tilt is refined by the gradient engine only")
        return self


EnginePlan = Annotated[GradientEnginePlan | ConventionalEnginePlan, Field(discriminator="type")]


class ReconsPlan(PlanModel):
    """One reconstruction: load, initialise, then run the engines in order on a shared state."""

    file_type: Literal["phaser_plan"] = "phaser_plan"
    version: Literal["1.0"] = SCHEMA_VERSION
    name: str = Field(min_length=1)
    backend: Literal["numpy", "jax", "cupy"] | None = None
    device: str | None = None
    dtype: Literal["float32", "float64"] = "float32"
    seed: int | None = Field(None, description="seed of the run's one random source")
    wavelength: float | None = Field(None, gt=0, description="overrides the wavelength from kV [A]")
    raw_data: hook_field("raw_data")  # type: ignore[valid-type]
    post_load: list[hook_field("post_load")] = Field(default_factory=list)  # type: ignore[valid-type]
    init: InitPlan = InitPlan()
    post_init: list[hook_field("post_init")] = Field(default_factory=list)  # type: ignore[valid-type]
    slices: Slices | None = None
    engines: list[EnginePlan] = Field(min_length=1)

    @model_validator(mode="after")
    def _gradient_needs_jax(self) -> ReconsPlan:
        if self.backend in ("numpy", "cupy"):
            for i, engine in enumerate(self.engines):
                if isinstance(engine, GradientEnginePlan):
                    raise ValueError(
                        f"engines[{i}] is a gradient engine, which runs on the jax backend only; "
                        f"set `backend: jax` (or leave it out)"
                    )
        return self

    def resolved_backend(self) -> str:
        """The backend a run uses: as written, else jax."""
        return self.backend or "jax"
