"""A sampler wrapper that repairs model-based proposals which would break the budget.

A proposal's parameter count is known before training (building the student on the meta
device takes milliseconds). TPE, though, learns the budget's wall only from recorded
infeasible trials; the best students sit right at that wall, and TPE samples parameter
groups (stem, widths, ...) independently, so on its own it keeps proposing about as many
models over the budget as under it, all through the study. Redrawing does not help: TPE
returns the best of its candidates, so a redraw lands in the same place.

So an over-budget relative proposal is *repaired*: its numeric student settings are moved
toward the space's low corner, along the straight line to it (in log space for ``log``
parameters), by binary search on the fraction of the way kept, until the model just fits.
Random startup trials are not repaired, so the study still records infeasible proposals
and the sampler still learns where the wall is; what changes is that, once TPE's model is
fitted, its proposals land just inside the wall instead of half of them beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from optuna import Study
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from sweep.search.space import SearchSpace

Count = Callable[[dict[str, Any]], int]  # chosen values -> parameter count
_SEARCH_STEPS = 12  # binary-search halvings: within 1/4096 of the way to the wall


def _toward_low(distribution: BaseDistribution, value: Any, keep: float) -> Any:
    """The value ``keep`` of the way from the distribution's low end to ``value``, on its grid."""
    d: Any = distribution
    if d.log:
        moved = math.exp(math.log(d.low) + keep * (math.log(value) - math.log(d.low)))
    else:
        moved = d.low + keep * (value - d.low)
    moved = min(max(moved, d.low), value)
    if isinstance(distribution, IntDistribution):
        steps = math.floor((moved - d.low) / d.step + 1e-9)
        return int(d.low + steps * d.step)
    if isinstance(distribution, FloatDistribution) and d.step is not None:
        steps = math.floor((moved - d.low) / d.step + 1e-9)
        return float(d.low + steps * d.step)
    return float(moved)


def shrink_to_budget(
    space: SearchSpace, proposal: dict[str, Any], count: Count, max_params: int
) -> dict[str, Any]:
    """Return the proposal, with its numeric student settings shrunk until the model fits.

    The proposal comes back unchanged when it already fits, when a setting it needs is
    missing, or when even the space's low corner (for its categorical choices) is over.
    """
    chosen = space.resolve(proposal)
    if chosen is None or count(chosen) <= max_params:
        return proposal
    numeric = [
        p
        for p in space.params
        if p.name in chosen
        and p.name.startswith("student.")
        and not isinstance(p.distribution, CategoricalDistribution)
    ]

    def at(keep: float) -> dict[str, Any]:
        moved = dict(chosen)
        for p in numeric:
            moved[p.name] = _toward_low(p.distribution, chosen[p.name], keep)
        return moved

    if not numeric or count(at(0.0)) > max_params:
        return proposal
    fits, over = 0.0, 1.0
    for _ in range(_SEARCH_STEPS):
        middle = (fits + over) / 2
        if count(at(middle)) <= max_params:
            fits = middle
        else:
            over = middle
    repaired = at(fits)
    return {**proposal, **{p.name: repaired[p.name] for p in numeric}}


class BudgetRepairSampler(BaseSampler):
    """Wrap a model-based sampler so its relative proposals are repaired to fit the budget.

    Args:
        inner: the sampler (TPE, NSGA-II); independent sampling passes straight through.
        repair: maps a relative proposal to the proposal to use.
    """

    def __init__(self, inner: BaseSampler, repair: Callable[[dict[str, Any]], dict[str, Any]]):
        self._inner = inner
        self._repair = repair
        self.repaired = 0  # proposals changed in this process, for logs and tests

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        params = self._inner.sample_relative(study, trial, search_space)
        if not params:
            return params
        repaired = self._repair(params)
        if repaired != params:
            self.repaired += 1
        return repaired

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
