"""Optuna samplers and pruners named in a search space (``sampler:``, ``early_stopping:``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning

from sweep.compress.plan import sampler_count
from sweep.errors import ConfigError
from sweep.search.repair import BudgetRepairSampler, shrink_to_budget
from sweep.search.space import SearchSpace

SamplerFactory = Callable[[dict[str, Any]], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[dict[str, Any], int], optuna.pruners.BasePruner]


def _tpe(options: dict[str, Any]) -> optuna.samplers.BaseSampler:
    # multivariate + group model the joint, conditional space (per-family widths) instead of
    # treating each parameter as independent; both are marked experimental in Optuna.
    options = {"multivariate": True, "group": True, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.samplers.TPESampler(**options)


SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": _tpe,
    "random": lambda options: optuna.samplers.RandomSampler(**options),
    "nsga2": lambda options: optuna.samplers.NSGAIISampler(**options),
}

PRUNERS: dict[str, PrunerFactory] = {
    "median": lambda options, epochs: optuna.pruners.MedianPruner(
        **{"n_startup_trials": 5, "n_warmup_steps": 1, **options}
    ),
    "hyperband": lambda options, epochs: optuna.pruners.HyperbandPruner(
        **{"min_resource": 1, "max_resource": max(epochs, 1), **options}
    ),
    "none": lambda options, epochs: optuna.pruners.NopPruner(),
}


def make_sampler(
    space: SearchSpace, num_classes: int | None = None
) -> optuna.samplers.BaseSampler:
    """Build the space's sampler; unknown options are a ConfigError naming the key.

    With ``num_classes``, model-based proposals that would break the budget are repaired
    (:class:`~sweep.search.repair.BudgetRepairSampler`).
    """
    options = {k: v for k, v in space.sampler.items() if k != "name"}
    try:
        sampler = SAMPLERS[space.sampler["name"]](options)
    except TypeError as exc:
        raise ConfigError(space.source, "sampler", f"bad option ({exc})") from None
    if num_classes is None:
        return sampler

    max_params = space.defaults.budget.max_params

    def count(chosen: dict[str, Any]) -> int:
        # The final model's count: a student pruned to a target fits, however wide it starts.
        return sampler_count(space.trial_config(chosen), num_classes)

    return BudgetRepairSampler(
        sampler, lambda proposal: shrink_to_budget(space, proposal, count, max_params)
    )


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    """Build the space's early-stopping pruner, sized to the trials' epoch count."""
    options = {k: v for k, v in space.early_stopping.items() if k != "name"}
    epochs = space.defaults.train.epochs
    try:
        return PRUNERS[space.early_stopping["name"]](options, epochs)
    except TypeError as exc:
        raise ConfigError(space.source, "early_stopping", f"bad option ({exc})") from None
