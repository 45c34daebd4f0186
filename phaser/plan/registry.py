"""Registration of every built-in hook: kind, short name, implementation and props class."""

from __future__ import annotations

from phaser import constraints, initial, noise, regularizers, solvers
from phaser.hooks import register


def _register_builtins() -> None:
    register("probe", "focused", "phaser.initial:focused", initial.FocusedProbeProps)
    register("scan", "raster", "phaser.initial:raster", initial.RasterScanProps)
    register("object", "random", "phaser.initial:random_object", initial.RandomObjectProps)
    register("tilt", "global", "phaser.initial:global_tilt", initial.GlobalTiltProps)
    register("tilt", "custom", "phaser.initial:custom_tilt", initial.CustomTiltProps)
    for name, props in noise.NOISE_PROPS.items():
        register("noise_model", name, f"phaser.noise:{noise.NOISE_LOSSES[name].__name__}", props)
    for name in solvers.OPTAX_SOLVERS:
        register("gradient_solver", name, f"optax:{name}", solvers.solver_props_class(name))
    for name, (function, props) in constraints.CONSTRAINTS.items():
        for kind in ("group_constraint", "iter_constraint"):
            register(kind, name, f"phaser.constraints:{function.__name__}", props)
    for name, (function, props) in regularizers.COST_REGULARIZERS.items():
        register("cost_regularizer", name, f"phaser.regularizers:{function.__name__}", props)
    from phaser.engines import conventional_props as conv

    register("conventional_solver", "epie", "phaser.engines.conventional.epie:epie_update", conv.EPIESolverProps)
    register("conventional_solver", "lsqml", "phaser.engines.conventional.lsqml:lsqml_update", conv.LSQMLSolverProps)
    register(
        "position_solver",
        "steepest_descent",
        "phaser.engines.conventional.positions:position_step",
        conv.PositionSolverProps,
    )
    _register_io()


def _register_io() -> None:
    from phaser.io import empad, manual, post_load

    register("raw_data", "manual", "phaser.io.manual:load_manual", manual.ManualProps)
    register("raw_data", "empad", "phaser.io.empad:load_empad", empad.EmpadProps)
    for name, (ref, props) in post_load.POST_LOAD_HOOKS.items():
        register("post_load", name, ref, props)


_register_builtins()
