"""Which earlier trial, if any, already holds a new trial's settings."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweep.search.duplicates import earlier_with_same_settings, taken_trials

LR = {"lr": FloatDistribution(1e-3, 1e-1)}


def add(study: optuna.Study, lr: float, trial_state: TrialState, **attrs: object) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": lr},
            distributions=LR,
            value=0.5 if trial_state == TrialState.COMPLETE else None,
            state=trial_state,
            user_attrs=attrs,
        )
    )


def asked(study: optuna.Study, lr: float, **attrs: object) -> optuna.Trial:
    study.enqueue_trial({"lr": lr}, user_attrs=attrs)
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1e-1)
    return trial


def test_taken_settings_are_found_and_the_earliest_wins() -> None:
    study = optuna.create_study()
    add(study, 0.01, TrialState.FAIL)  # failed: its settings may be tried again
    add(study, 0.01, TrialState.PRUNED, state="infeasible")  # never trained
    add(study, 0.02, TrialState.COMPLETE)
    add(study, 0.01, TrialState.PRUNED)  # stopped early: trained, taken
    add(study, 0.01, TrialState.COMPLETE)
    trial = asked(study, 0.01)
    assert earlier_with_same_settings(trial, taken_trials(trial)).number == 3
    assert earlier_with_same_settings(asked(study, 0.05), taken_trials(trial)) is None


def test_of_two_running_at_once_only_the_later_is_a_duplicate() -> None:
    study = optuna.create_study()
    first, second = asked(study, 0.03), asked(study, 0.03)
    assert earlier_with_same_settings(first, taken_trials(first)) is None
    assert earlier_with_same_settings(second, taken_trials(second)).number == first.number


def test_a_retry_is_not_a_duplicate_of_its_lineage() -> None:
    study = optuna.create_study()
    add(study, 0.04, TrialState.FAIL)
    add(study, 0.04, TrialState.FAIL, retry_of=0)  # the first retry died too
    retry = asked(study, 0.04, retry_of=0)
    assert earlier_with_same_settings(retry, taken_trials(retry)) is None
    add(study, 0.04, TrialState.COMPLETE)  # another trial, not of the lineage, took them
    late = asked(study, 0.04, retry_of=0)
    assert earlier_with_same_settings(late, taken_trials(late)).number == 3
