"""Plan parameters of the conventional engines' solvers (ePIE, LSQML) and position solver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from phaser.hooks import HookProps
from phaser.schedules import NonNegativeSchedule, PositiveSchedule


class EPIESolverProps(HookProps):
    """ePIE (multislice: 3PIE) step sizes."""

    beta_object: NonNegativeSchedule = Field(1.0, description="object step size (dimensionless, >= 0; stable up to 2)")
    beta_probe: NonNegativeSchedule = Field(1.0, description="probe step size (dimensionless, >= 0; stable up to 2)")


class LSQMLSolverProps(HookProps):
    """LSQML (Odstrcil et al. 2018) parameters."""

    stochastic: bool = Field(True, description="update after each group (else once per iteration)")
    beta_object: NonNegativeSchedule = Field(1.0, description="relaxation of the object step")
    beta_probe: NonNegativeSchedule = Field(1.0, description="relaxation of the probe step")
    illum_reg_object: NonNegativeSchedule = Field(
        1e-2, description="delta_O: regularization of the illumination normalisation"
    )
    illum_reg_probe: NonNegativeSchedule = Field(
        1e-2, description="delta_P: regularization of the object-transparency normalisation"
    )
    gamma: NonNegativeSchedule = Field(1e-4, description="regularization of the per-position step denominator")
    step_reg: NonNegativeSchedule = Field(
        1.0,
        description="regularization of the group's mean step [positions]: a pixel seen by k positions of a group "
        "moves by about k / (k + step_reg) of their mean step (0: the plain mean, full steps from single positions)",
    )


class PositionSolverProps(HookProps):
    """Per-position gradient steps of the conventional engines."""

    step_size: PositiveSchedule = Field(
        1.0, description="fraction of each position's least-squares shift estimate applied per iteration"
    )
    momentum: float = Field(0.0, ge=0, lt=1, description="heavy-ball momentum")
    max_step: float = Field(0.5, gt=0, description="largest move per iteration [px]")
    kind: Literal["steepest_descent", "momentum"] = "steepest_descent"
