"""sweep.search.final: what ``sweep finalize`` trains (the queue), how a lost training is
queued again, and how the seeds' results become a report, a front and an export choice."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.errors import SweepError
from sweep.search.final import (
    FinalTrials,
    candidates,
    export_choice,
    final_front,
    final_results,
    pair_of,
    queue_pairs,
    refill,
    trial_label,
)
from sweep.search.pareto import record
from sweep.search.space import parse_space

SPACE = {
    "study": "s",
    "dataset": {"name": "demo", "image_size": 32, "resize": 32},
    "fixed": {"epochs": 20, "seed": 10},
    "fidelity": {"search": {"epochs": 4, "image_size": 16}, "final": {"epochs": 30}},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv", "inverted_residual"]},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2},
    },
}
DISTRIBUTIONS = {
    "student.family": CategoricalDistribution(["dsconv", "inverted_residual"]),
    "train.lr": FloatDistribution(1e-3, 1e-2),
}


def _search_trial(number: int, val_acc: float, params: int, family: str = "dsconv"):
    return create_trial(
        state=TrialState.COMPLETE,
        value=val_acc,
        params={"student.family": family, "train.lr": 0.001 * (number + 1)},
        distributions=DISTRIBUTIONS,
        user_attrs={"val_acc": val_acc, "params": params, "family": family, "macs": 10},
    )


def _search_study() -> optuna.Study:
    study = optuna.create_study(study_name="s", direction="maximize")
    for number, (acc, params) in enumerate(
        [(0.70, 30_000), (0.80, 50_000), (0.75, 55_000), (0.90, 70_000)]
    ):
        study.add_trial(_search_trial(number, acc, params))
    return study


def _final_trial(source: int, seed: int, val_acc: float, params: int, state=TrialState.COMPLETE):
    return create_trial(
        state=state,
        value=val_acc if state == TrialState.COMPLETE else None,
        user_attrs={
            "source_trial": source,
            "seed": seed,
            "val_acc": val_acc,
            "params": params,
            "macs": 40,
            "mlflow_run_id": f"run-{source}-{seed}",
        },
    )


def test_candidates_are_the_front_or_the_top_k_best_first() -> None:
    records = [record(t) for t in _search_study().trials]
    front = candidates(records, 60_000, top=None)
    assert [r.number for r in front] == [1, 0]  # 2 is dominated; 3 is over the budget
    assert [r.number for r in candidates(records, 60_000, top=2)] == [1, 2]
    assert [r.number for r in candidates(records, 60_000, top=9)] == [1, 2, 0]


def test_queue_trains_each_seed_once_and_a_rerun_queues_only_what_is_missing() -> None:
    study = optuna.create_study(study_name="s.final", direction="maximize")
    wanted = [(1, 0), (1, 1), (0, 0), (0, 1)]
    assert queue_pairs(study, wanted) == 4
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(pair_of(t) for t in queued) == sorted(wanted)
    # A re-run while nothing ran queues nothing twice.
    assert queue_pairs(study, wanted) == 4
    assert len(study.trials) == 4
    # Two trainings end: one complete, one failed (and not retried).
    done = study.ask()
    study.tell(done, 0.8)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    # Asking for a third seed too: the failed pair and the new seeds are queued, the
    # complete one never again.
    more = [*wanted, (1, 2), (0, 2)]
    assert queue_pairs(study, more) == 6
    waiting = sorted(pair_of(t) for t in study.get_trials(states=(TrialState.WAITING,)))
    assert pair_of(done) not in waiting
    assert waiting == sorted(set(more) - {pair_of(done)})


def test_a_lost_training_is_queued_again_until_its_retries_are_spent() -> None:
    study = optuna.create_study(study_name="s.final", direction="maximize")
    queue_pairs(study, [(3, 0)])
    for _ in range(2):
        trial = study.ask()
        study.tell(trial, state=TrialState.FAIL)
        refill(study, max_retries=2)  # lost: queued again
        assert [pair_of(t) for t in study.get_trials(states=(TrialState.WAITING,))] == [(3, 0)]
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(SweepError, match="trial 3 seed 0 failed 3 times"):
        refill(study, max_retries=2)
    # A new `sweep finalize` starts the count again.
    queue_pairs(study, [(3, 0)])
    refill(study, max_retries=2)
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_a_final_trial_trains_its_source_settings_at_the_final_fidelity_with_its_seed() -> None:
    space = parse_space(SPACE, "s.yaml")
    source = _search_study()
    final = optuna.create_study(study_name="s.final", direction="maximize")
    queue_pairs(final, [(1, 0), (1, 2)])
    trials = FinalTrials(space.final(), source)
    first, second = final.ask(), final.ask()
    cfg = trials.config(first)
    assert cfg.train.lr == pytest.approx(0.002) and cfg.student.family == "dsconv"
    assert (cfg.train.epochs, cfg.dataset.image_size, cfg.train.seed) == (30, 32, 10)
    assert trials.config(second).train.seed == 12
    assert trials.run_tags(second) == {
        "source_trial": "1",
        "seed": "2",
        "optuna.study": "s.final",
    }
    # The source trial's search config was the proxy one.
    search_cfg = space.trial_config(source.trials[1].params)
    assert (search_cfg.train.epochs, search_cfg.dataset.image_size) == (4, 16)


def test_the_same_source_and_seed_queued_twice_is_trained_once() -> None:
    space = parse_space(SPACE, "s.yaml")
    final = optuna.create_study(study_name="s.final", direction="maximize")
    for _ in range(2):  # two `sweep finalize` on two hosts, queuing at the same moment
        final.enqueue_trial({}, user_attrs={"source_trial": 1, "seed": 0})
    final.enqueue_trial({}, user_attrs={"source_trial": 1, "seed": 1})
    trials = FinalTrials(space.final(), _search_study())
    first, again, other = final.ask(), final.ask(), final.ask()
    assert trials.duplicate(first) is None
    assert trials.duplicate(again).number == first.number
    assert trials.duplicate(other) is None


def test_results_average_the_seeds_and_the_front_is_built_from_the_means() -> None:
    search = [record(t) for t in _search_study().trials]
    final = [
        _final_trial(1, 0, 0.86, 50_000),
        _final_trial(1, 1, 0.84, 50_000),
        _final_trial(1, 2, 0.0, 50_000, state=TrialState.FAIL),
        _final_trial(0, 0, 0.88, 30_000),
        _final_trial(0, 1, 0.82, 30_000),
        _final_trial(2, 0, 0.83, 55_000),
    ]
    results = final_results(search, final, 60_000)
    assert [f.source.number for f in results] == [0, 1, 2]  # 0.85 = 0.85 > 0.83: fewer params
    first, second, third = results
    assert first.mean == pytest.approx(0.85) and first.std == pytest.approx(0.0424264, abs=1e-6)
    assert second.mean == pytest.approx(0.85) and second.seeds == (0, 1) and second.wanted == 3
    assert third.std is None and third.macs == 40
    # 1 has the same mean as 0 with more parameters: only 0 is on the final front.
    assert [f.source.number for f in final_front(results)] == [0]
    result, seed, run, reason = export_choice(results)
    assert (result.source.number, seed, run.run_id) == (0, 0, "run-0-0")
    assert "trial 0 (final stage), seed 0" in reason and "0.8500 +- 0.0424" in reason


def test_a_trial_nobody_queued_has_nothing_to_train() -> None:
    final = optuna.create_study(study_name="s.final", direction="maximize")
    trials = FinalTrials(parse_space(SPACE, "s.yaml").final(), _search_study())
    with pytest.raises(SweepError, match="trial 0 was not queued by `sweep finalize`"):
        trials.config(final.ask())


def test_a_trial_is_called_what_a_person_calls_it() -> None:
    # Read from the stored trial, so the pool's display names a worker's trial the same way.
    final = create_trial(value=0.9, user_attrs={"source_trial": 3, "seed": 1})
    final.number = 0
    search = create_trial(value=0.9)
    search.number = 7
    assert (trial_label(final), trial_label(search)) == ("trial 3 seed 1", "trial 7")
