"""Tests of sweep.search.pareto: the front, the best trial, state names and streaks."""

from __future__ import annotations

import optuna

from sweep.search.pareto import (
    TrialRecord,
    best_trial,
    count_states,
    infeasible_streak,
    pareto_front,
    record,
)


def _r(number: int, state: str, acc: float | None, params: int | None) -> TrialRecord:
    value = acc if state == "complete" else None
    return TrialRecord(number, state, value, acc, params, None, None, "dsconv")


RECORDS = [
    _r(0, "complete", 0.70, 20_000),
    _r(1, "complete", 0.80, 40_000),
    _r(2, "complete", 0.75, 45_000),  # dominated by 1
    _r(3, "complete", 0.85, 59_000),
    _r(4, "complete", 0.95, 61_000),  # over budget: never on the front or best
    _r(5, "early-stopped", 0.99, 10_000),  # did not finish: not comparable
    _r(6, "infeasible", None, 90_000),
    _r(7, "complete", 0.80, 40_000),  # ties with 1: same point, later trial
    _r(8, "failed", None, 30_000),
]


def test_front_is_non_dominated_feasible_complete_trials() -> None:
    front = pareto_front(RECORDS, 60_000)
    assert [r.number for r in front] == [0, 1, 3]


def test_best_is_most_accurate_feasible_with_fewer_params_on_ties() -> None:
    assert best_trial(RECORDS, 60_000).number == 3
    assert best_trial(RECORDS[:3] + RECORDS[7:], 60_000).number == 1
    assert best_trial([_r(0, "infeasible", None, 90_000)], 60_000) is None


def test_counts_and_infeasible_streak() -> None:
    counts = count_states(RECORDS)
    assert counts == {
        "complete": 6,
        "early-stopped": 1,
        "infeasible": 1,
        "duplicate": 0,
        "failed": 1,
        "running": 0,
    }
    streak = [
        _r(0, "complete", 0.5, 1),
        _r(1, "infeasible", None, 9),
        _r(2, "infeasible", None, 9),
        _r(3, "running", None, None),
    ]
    assert infeasible_streak(streak) == 2


def test_record_reads_optuna_states() -> None:
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    done.set_user_attr("val_acc", 0.5)
    done.set_user_attr("params", 1234)
    study.tell(done, 0.5)
    over = study.ask()
    over.set_user_attr("state", "infeasible")
    study.tell(over, state=optuna.trial.TrialState.PRUNED)
    stopped = study.ask()
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    states = [record(t).state for t in study.trials]
    assert states == ["complete", "infeasible", "early-stopped"]
    assert record(study.trials[0]).params == 1234 and record(study.trials[0]).value == 0.5
