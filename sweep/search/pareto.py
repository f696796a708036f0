"""The accuracy-versus-parameters front and the choice of "best", from the Optuna storage.

The study optimises one objective (validation accuracy) under the hard budget, which keeps
Optuna's pruners usable; the front is formed here from every complete, feasible trial:
a trial is on it when no other trial is at least as accurate with at most as many
parameters (and strictly better in one). Early-stopped trials never finished training, so
their accuracy is not comparable and they stay off the front.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

from sweep.records import STATES, TrialRecord

__all__ = [
    "STATES",
    "TrialRecord",
    "best_trial",
    "count_states",
    "feasible_complete",
    "infeasible_streak",
    "pareto_front",
    "record",
    "trial_state",
]


def trial_state(trial: FrozenTrial) -> str:
    """Our name for an Optuna trial's state (infeasible and duplicate trials are PRUNED with a
    flag)."""
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state == TrialState.PRUNED:  # not trained (over budget, a duplicate) or stopped
        untrained = trial.user_attrs.get("state")
        return untrained if untrained in ("infeasible", "duplicate") else "early-stopped"
    if trial.state == TrialState.FAIL:
        return "failed"
    return "running"


def record(trial: FrozenTrial) -> TrialRecord:
    """Build a TrialRecord from an Optuna trial."""
    attrs = trial.user_attrs
    return TrialRecord(
        number=trial.number,
        state=trial_state(trial),
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        val_acc=attrs.get("val_acc"),
        params=attrs.get("params"),
        macs=attrs.get("macs"),
        run_id=attrs.get("mlflow_run_id"),
        family=trial.params.get("student.family", attrs.get("family")),
        settings=dict(trial.params),
    )


def feasible_complete(records: Iterable[TrialRecord], max_params: int) -> list[TrialRecord]:
    """Complete trials whose parameter count is within the budget."""
    return [
        r
        for r in records
        if r.state == "complete"
        and r.params is not None
        and r.params <= max_params
        and r.val_acc is not None
    ]


def pareto_front(records: Iterable[TrialRecord], max_params: int) -> list[TrialRecord]:
    """Non-dominated feasible trials (max accuracy, min parameters), fewest parameters first."""
    candidates = sorted(
        feasible_complete(records, max_params),
        key=lambda r: (r.params, -r.val_acc, r.number),  # type: ignore[operator]
    )
    front: list[TrialRecord] = []
    best_acc = float("-inf")
    for r in candidates:
        # Sorted by parameters, a trial is on the front when it beats every smaller one.
        if r.val_acc > best_acc:  # type: ignore[operator]
            front.append(r)
            best_acc = r.val_acc  # type: ignore[assignment]
    return front


def best_trial(
    records: Iterable[TrialRecord], max_params: int, direction: str = "maximize"
) -> TrialRecord | None:
    """The best feasible complete trial by the objective; ties go to fewer parameters."""
    sign = -1.0 if direction == "maximize" else 1.0
    candidates = [r for r in feasible_complete(records, max_params) if r.value is not None]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (sign * r.value, r.params, r.number))  # type: ignore[operator]


def count_states(records: Sequence[TrialRecord]) -> dict[str, int]:
    """Number of trials in each state, every state present."""
    counts = {state: 0 for state in STATES}
    for r in records:
        counts[r.state] += 1
    return counts


def infeasible_streak(records: Sequence[TrialRecord]) -> int:
    """How many of the latest proposals in a row were over budget."""
    streak = 0
    for r in sorted(records, key=lambda r: r.number, reverse=True):
        if r.state == "running":
            continue
        if r.state != "infeasible":
            break
        streak += 1
    return streak
