"""Optuna samplers and pruners from the study file's ``sampler:`` and ``pruner:`` entries."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from phaser_opt.space import ChoiceParam, FloatParam, IntParam, SearchSpace

# Where each sampler needs an optional package, the extra that installs it.
_EXTRAS = {"gp": ("torch", "gp"), "cmaes": ("cmaes", "cmaes")}


def build_sampler(sampler_spec: Any, space: SearchSpace | None = None) -> optuna.samplers.BaseSampler:
    """The sampler named by ``sampler_spec`` with its options; raises ValueError naming the option.

    TPE defaults to ``multivariate`` and ``group`` (conditional parameters of ``!choice`` branches
    are modelled per branch) and to ``constant_liar`` (parallel workers do not pick the same point).
    The grid sampler takes its grid from the search space (every choice, and ``step``-ed numbers).
    """
    kind, seed, options = sampler_spec.type, sampler_spec.seed, dict(sampler_spec.options)
    _require_extra(kind)
    try:
        if kind == "tpe":
            defaults = {"multivariate": True, "group": True, "constant_liar": True}
            with warnings.catch_warnings():
                # multivariate and group are marked experimental; they are what conditional spaces need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.samplers.TPESampler(seed=seed, **{**defaults, **options})
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, **options)
        if kind == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, **options)
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed, **options)
        if kind == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, **options)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **options)
        if kind == "grid":
            return optuna.samplers.GridSampler(
                options.pop("search_space", None) or grid_of(space), seed=seed, **options
            )
    except TypeError as exc:
        raise ValueError(f"sampler.options: {_option_message(exc)}") from None
    raise ValueError(f"sampler.type: {kind!r} is not a known sampler")


def grid_of(space: SearchSpace | None) -> dict[str, list[Any]]:
    """Every value of each parameter: choices, ints, and floats with a ``step``."""
    if space is None or not space.params:
        raise ValueError("sampler: a grid needs a search space")
    grid: dict[str, list[Any]] = {}
    for name, param in space.params.items():
        if isinstance(param, ChoiceParam):
            grid[name] = list(param.labels)
        elif isinstance(param, IntParam) and not param.log:
            grid[name] = list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))
        elif isinstance(param, FloatParam) and param.step:
            count = round((param.high - param.low) / param.step)
            grid[name] = [param.low + k * param.step for k in range(count + 1)]
        else:
            raise ValueError(f"sampler: grid search needs a step for {name!r} (or use another sampler)")
    return grid


def build_pruner(pruner_spec: Any) -> optuna.pruners.BasePruner:
    """The pruner named by ``pruner_spec`` with its options (``patient`` wraps a median pruner)."""
    kind, options = pruner_spec.type, dict(pruner_spec.options)
    try:
        if kind == "none":
            return optuna.pruners.NopPruner()
        if kind == "median":
            return optuna.pruners.MedianPruner(**options)
        if kind == "percentile":
            return optuna.pruners.PercentilePruner(**{"percentile": 25.0, **options})
        if kind == "hyperband":
            return optuna.pruners.HyperbandPruner(**options)
        if kind == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(**options)
        if kind == "threshold":
            return optuna.pruners.ThresholdPruner(**options)
        if kind == "patient":
            patience = options.pop("patience", 3)
            min_delta = options.pop("min_delta", 0.0)
            return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(**options), patience, min_delta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pruner.options: {_option_message(exc)}") from None
    raise ValueError(f"pruner.type: {kind!r} is not a known pruner")


def _require_extra(kind: str) -> None:
    if kind not in _EXTRAS:
        return
    module, extra = _EXTRAS[kind]
    try:
        __import__(module)
    except ImportError:
        raise ValueError(f"sampler.type: {kind} needs the package {module!r}: pip install 'phaser[{extra}]'") from None


def _option_message(exc: Exception) -> str:
    text = str(exc)
    return text.split("() ", 1)[-1] if "() " in text else text
