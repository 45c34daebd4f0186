"""The plan schema: typed, frozen pydantic models validated before anything runs.

Field names and meanings follow the plan format of the original phaser package (``phaserem`` 0.3):
a plan written for it runs here with the same meaning for every feature both have. Extensions
are additive (``seed``, ``gaussian`` noise, schedules of type ``cosine``/``exponential``, and
lists such as ``regularizers`` may be left out instead of written ``[]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

import phaser.plan.registry  # noqa: F401  (fills the hook registry before the fields are built)
from phaser.hooks import Hook, StrictNumbers
from phaser.plan.hook_types import hook_field
from phaser.schedules import Flag, SimpleFlag, flag_ever

SCHEMA_VERSION = "1.0"
RECONS_VARS = ("object", "probe", "positions", "tilt")


class PlanModel(StrictNumbers):
    """Base of the plan models: immutable, unknown keys rejected, numbers finite and not booleans."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


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
    """How probe, scan and object start; ``state`` starts from (or resumes) a saved HDF5 state."""

    state: Path | None = Field(None, description="a state file (final.h5, interrupted.h5, iterNNN.h5) to start from")
    resume: bool | None = Field(
        None,
        description=(
            "with `state`: true continues the iteration count and schedules where the state stopped and runs "
            "only the remaining iterations; false starts every engine from its first iteration; "
            "null (default) continues when the state is an unfinished run of a plan with the same engines"
        ),
    )
    scan: hook_field("scan") | None = None  # type: ignore[valid-type]
    probe: hook_field("probe") | None = None  # type: ignore[valid-type]
    object: hook_field("object") | None = None  # type: ignore[valid-type]
    tilt: hook_field("tilt") | None = None  # type: ignore[valid-type]

    @field_validator("scan", "probe", "tilt", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value

    @model_validator(mode="after")
    def _resume_needs_state(self) -> InitPlan:
        if self.resume is not None and self.state is None:
            raise ValueError("resume: there is no init.state to resume from")
        return self


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


FIGURE_EXTENSIONS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "webp", "raw", "rgba")
"""Picture formats the figures are written in (matplotlib's, but pgf, which needs LaTeX); ``tif``/``tiff``
write raw float32 images."""
RAW_IMAGE_EXTENSIONS = ("tif", "tiff")
FIGURE_ONLY_KINDS = ("scan", "tilt")
"""Image kinds that exist as figures only (no raw array to write as TIFF)."""
_FORMAT_FIELDS = {
    "img_fmt": {"type": "probe", "iter": 1, "ext": "png"},
    "hdf5_fmt": {"iter": 1, "name": "plan"},
    "out_dir": {"name": "plan"},
}


class SaveOptions(PlanModel):
    """What to write and where (``{name}`` is the plan name, ``{iter}`` the total iteration)."""

    images: tuple[ImageType, ...] = Field(("probe", "object_phase_stack"), description="figures written")
    crop_roi: bool = Field(True, description="object figures show only the region the scan covered")
    unwrap_phase: Literal[False] = Field(False, description="not supported (phase unwrapping)")
    img_dtype: None = Field(None, description="not supported: images are written as figures (plot_ext, plot_dpi)")
    plot_ext: str = Field("png", description="file type of the figures")
    plot_dpi: int = Field(150, ge=10, le=2000, description="resolution of the figures [dots per inch]")
    out_dir: str = Field("{name}", description="output folder, relative to the working directory")
    img_fmt: str = "{type}_iter{iter:03}.{ext}"
    hdf5_fmt: str = "iter{iter:03}.h5"

    @field_validator("plot_ext")
    @classmethod
    def _known_extension(cls, value: str) -> str:
        ext = value.lstrip(".").lower()
        if ext not in FIGURE_EXTENSIONS + RAW_IMAGE_EXTENSIONS:
            known = ", ".join(FIGURE_EXTENSIONS + RAW_IMAGE_EXTENSIONS)
            raise ValueError(f"{value!r} is not a supported image type; expected one of {known}")
        return value

    @field_validator(*_FORMAT_FIELDS)
    @classmethod
    def _known_placeholders(cls, value: str, info: Any) -> str:
        names = _FORMAT_FIELDS[info.field_name]
        try:
            value.format(**names)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            placeholders = ", ".join("{" + n + "}" for n in names)
            raise ValueError(f"{value!r} is not a file name pattern with {placeholders}: {exc!r}") from None
        return value

    @model_validator(mode="after")
    def _raw_images_have_arrays(self) -> SaveOptions:
        figure_only = [k for k in self.images if k in FIGURE_ONLY_KINDS]
        if self.plot_ext.lstrip(".").lower() in RAW_IMAGE_EXTENSIONS and figure_only:
            raise ValueError(
                f"images: {', '.join(figure_only)}: figures only, not written as {self.plot_ext} arrays; "
                "remove them or choose a picture plot_ext (png, pdf, svg, ...)"
            )
        return self

    @field_validator("unwrap_phase", "img_dtype", mode="before")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        reasons = {
            "unwrap_phase": "phase unwrapping is not implemented (figures show the wrapped phase)",
            "img_dtype": "images are written as figures (see plot_ext, plot_dpi); the arrays are in the HDF5 outputs",
        }
        if value not in (None, False):
            raise ValueError(f"{reasons[info.field_name]}; remove `{info.field_name}`")
        return value


_NO_EFFECT = {
    "buffer_n_groups": "not supported: all patterns stay on the device here",
    "jit_unroll_slices": "not supported: the multislice loop is compiled as one scan",
    "check_every_group": "not supported: NaN checks run once per iteration",
    "send_every_group": "not supported: observers are called once per iteration",
    "calc_error_fraction": "not supported: the error is computed over all positions of every pass",
}


class EnginePlanBase(PlanModel):
    """Settings every engine shares."""

    niter: int = Field(10, ge=0, description="iterations of this engine")
    sim_shape: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="detector shape (k_y, k_x) simulated by this engine [pixels]; default: the data's"
    )
    resize_method: Literal["pad_crop", "resample"] = "pad_crop"
    probe_modes: int = Field(1, ge=1, description="incoherent probe modes")
    base_mode_power: float = Field(0.7, gt=0, lt=1, description="fraction of the intensity in the first probe mode")
    bwlim_frac: float | None = Field(2 / 3, gt=0, description="band limit of the propagator, fraction of Nyquist")
    obj_pad_px: float = Field(5.0, ge=0, description="object margin around the scan [pixels]")
    slices: Slices | None = None
    grouping: int | None = Field(None, ge=1, description="positions per group (per update)")
    compact: bool = False
    shuffle_groups: Flag | None = None
    buffer_n_groups: None = Field(None, description=_NO_EFFECT["buffer_n_groups"])
    jit_unroll_slices: None = Field(None, description=_NO_EFFECT["jit_unroll_slices"])
    check_every_group: Literal[False] = Field(False, description=_NO_EFFECT["check_every_group"])
    send_every_group: Literal[False] = Field(False, description=_NO_EFFECT["send_every_group"])
    update_probe: Flag = True
    update_object: Flag = True
    update_positions: Flag = False
    update_tilt: Flag = False
    calc_error: Flag = SimpleFlag(every=1)
    calc_error_fraction: None = Field(None, description=_NO_EFFECT["calc_error_fraction"])
    save: Flag = False
    save_images: Flag = False
    save_options: SaveOptions = SaveOptions()
    early_termination: int | None = Field(
        None, ge=1, description="stop after this many iterations without improvement (first engine only)"
    )
    early_termination_smoothing: float = Field(0.9, gt=0, le=1, description="smoothing of the error for it")
    mtf: None = Field(None, description="detector MTF: not supported yet")

    @field_validator(*_NO_EFFECT, mode="before")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        # accepted as written by the original format only at its no-op value
        if value not in (None, False):
            raise ValueError(f"{_NO_EFFECT[info.field_name]}; remove `{info.field_name}`")
        return value

    @model_validator(mode="after")
    def _expr_schedules_in_range(self) -> EnginePlanBase:
        from phaser.plan.schedule_check import expr_problems

        problems = expr_problems(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
        return self

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
    device: None = Field(None, description="not supported: choose devices with JAX_PLATFORMS / CUDA_VISIBLE_DEVICES")
    dtype: Literal["float32", "float64"] = "float32"
    seed: int | None = Field(None, ge=0, description="seed of the run's one random source")
    wavelength: float | None = Field(None, gt=0, description="overrides the wavelength from kV [A]")
    raw_data: hook_field("raw_data")  # type: ignore[valid-type]
    post_load: list[hook_field("post_load")] = Field(default_factory=list)  # type: ignore[valid-type]
    init: InitPlan = InitPlan()
    post_init: list[Any] = Field(default_factory=list, max_length=0, description="not supported (no post-init hooks)")
    slices: Slices | None = None
    engines: list[EnginePlan] = Field(min_length=1)

    @field_validator("device", "post_init", mode="before")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        reasons = {
            "device": "choosing a device in the plan is not supported; use JAX_PLATFORMS or CUDA_VISIBLE_DEVICES",
            "post_init": "post-init hooks are not supported; use init hooks or post_load",
        }
        if value not in (None, []):
            raise ValueError(f"{reasons[info.field_name]}; remove `{info.field_name}`")
        return value

    @model_validator(mode="after")
    def _early_termination_on_first_engine(self) -> ReconsPlan:
        for i, engine in enumerate(self.engines[1:], start=1):
            if engine.early_termination is not None:
                raise ValueError(
                    f"engines[{i}].early_termination: only the first engine's early_termination is used; "
                    "move it to engines[0] or remove it"
                )
        return self

    @model_validator(mode="after")
    def _probe_or_state(self) -> ReconsPlan:
        if self.init.state is None and self.init.probe is None:
            raise ValueError("init.probe: required unless init.state is given (e.g. {type: focused, conv_angle: 20})")
        return self

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
