"""A study never trains the same settings twice by accident.

Two proposals can coincide: a seeded sampler started again, separate ``sweep run``
processes that share a seed, or TPE itself on a small categorical space. A trial whose
parameters equal those of an earlier trial that is running, finished or stopped early is
not trained; it is recorded as a duplicate of it. The earlier trial number wins, so of two
processes that proposed the same settings at once exactly one trains them. A deliberate
retry of a crashed trial (``retry_of``) is not a duplicate of its own lineage, and failed
trials do not count (their settings may be tried again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optuna.trial import BaseTrial, FrozenTrial, TrialState

# States whose settings are taken: trained, being trained, or stopped early.
_TAKEN = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)
# PRUNED trials that were not trained hold nothing to protect.
_UNTRAINED = ("infeasible", "duplicate")


def earlier_with_same_settings(
    trial: BaseTrial,
    taken: list[FrozenTrial],
    settings: Callable[[BaseTrial | FrozenTrial], Any] = lambda t: t.params,
) -> FrozenTrial | None:
    """The earliest other trial that holds ``trial``'s parameters, or None.

    Args:
        trial: the trial, its parameters already suggested.
        taken: the study's trials (``study.get_trials(states=...)``, any order).
        settings: what makes two trials the same (default: their parameters; a final
            study's queued trainings compare their source trial and seed).
    """
    lineage = trial.user_attrs.get("retry_of")
    for other in sorted(taken, key=lambda t: t.number):
        if other.number >= trial.number:
            break
        if other.state not in _TAKEN or other.user_attrs.get("state") in _UNTRAINED:
            continue
        if lineage is not None and lineage in (other.number, other.user_attrs.get("retry_of")):
            continue
        if settings(other) == settings(trial):
            return other
    return None


def taken_trials(trial: BaseTrial) -> list[FrozenTrial]:
    """The trials of ``trial``'s study whose settings are taken (see :data:`_TAKEN`)."""
    return trial.study.get_trials(deepcopy=False, states=_TAKEN)
