"""Plans: the declarative description of a reconstruction, validated before anything runs."""

from phaser.plan.load import PlanError, dump_plan, load_plans, plan_to_data, validate_plan
from phaser.plan.schema import GradientEnginePlan, ReconsPlan, slice_thicknesses

__all__ = [
    "PlanError",
    "ReconsPlan",
    "GradientEnginePlan",
    "dump_plan",
    "load_plans",
    "plan_to_data",
    "validate_plan",
    "slice_thicknesses",
]
