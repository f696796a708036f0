"""Tests of sweep.search.repair: repairing over-budget proposals, and that the sampler
then stops proposing infeasible models once its model is fitted."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from sweep.models.budget import BudgetReport, proposal_params
from sweep.search.repair import shrink_to_budget
from sweep.search.samplers import make_sampler
from sweep.search.space import SearchSpace, load_space

DEMO = Path(__file__).resolve().parents[2] / "search_spaces" / "demo.yaml"


@pytest.fixture(scope="module")
def demo() -> SearchSpace:
    return load_space(DEMO)


def _count(space: SearchSpace):
    return lambda chosen: proposal_params(space.trial_config(chosen).student, 10)


def test_over_budget_proposal_is_shrunk_just_inside_the_wall(demo: SearchSpace) -> None:
    proposal = {
        "student.family": "dsconv",
        "student.stem": 32,
        "student.widths.0": 64,
        "student.widths.1": 160,
        "student.widths.2": 512,
        "student.width_mult": 1.4,
        "student.expansion": 6,
        "kd.alpha": 0.5,
        "kd.temperature_start": 4.0,
        "kd.temperature_end": 2.0,
        "train.lr": 0.005,
    }
    count = _count(demo)
    assert count(demo.resolve(proposal)) > 60_000
    repaired = shrink_to_budget(demo, proposal, count, 60_000)
    params = count(demo.resolve(repaired))
    assert 54_000 <= params <= 60_000  # just inside, not collapsed to the low corner
    for name in ("student.stem", "student.widths.0", "student.widths.1", "student.widths.2"):
        assert repaired[name] <= proposal[name]
        spec = next(p for p in demo.params if p.name == name)
        assert spec.distribution._contains(spec.distribution.to_internal_repr(repaired[name]))
    # Settings that do not shape the model, and inactive ones, are left alone.
    for name in ("kd.alpha", "train.lr", "student.family", "student.width_mult"):
        assert repaired[name] == proposal[name]


def test_fitting_or_unrepairable_proposals_come_back_unchanged(demo: SearchSpace) -> None:
    count = _count(demo)
    small = {
        "student.family": "inverted_residual",
        "student.stem": 8,
        "student.width_mult": 0.3,
        "student.expansion": 2,
        "kd.alpha": 0.5,
        "kd.temperature_start": 4.0,
        "kd.temperature_end": 2.0,
        "train.lr": 0.005,
    }
    assert shrink_to_budget(demo, small, count, 60_000) == small
    assert shrink_to_budget(demo, small, count, 10) == small  # even the low corner is over
    partial = {"student.family": "dsconv"}
    assert shrink_to_budget(demo, partial, count, 60_000) == partial


def _infeasible_by_trial(space: SearchSpace, num_classes: int | None, trials: int) -> list[bool]:
    """Run a study whose stand-in accuracy grows with size, as real ones do, so the best
    models sit at the budget's wall; return which trials were over budget."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(space, num_classes))

    def objective(trial: optuna.Trial) -> float:
        cfg = space.trial_config(space.suggest(trial))
        params = proposal_params(cfg.student, 10)
        report = BudgetReport(params, cfg.budget.max_params, cfg.budget.count)
        trial.set_constraint("params_over_budget", float(report.excess))
        if not report.feasible:
            raise optuna.TrialPruned()
        return 1 - math.exp(-report.params / 20_000) + 0.1 * trial.params["kd.alpha"]

    study.optimize(objective, n_trials=trials)
    return [t.constraints["params_over_budget"] > 0 for t in study.trials]


def test_share_of_infeasible_proposals_falls_as_the_study_goes_on(demo: SearchSpace) -> None:
    repaired = _infeasible_by_trial(demo, 10, 40)
    startup = demo.sampler["n_startup_trials"]
    assert any(repaired[:startup]), "random startup trials still teach the sampler the wall"
    assert sum(repaired[20:]) == 0
    assert sum(repaired[20:]) < sum(repaired[:20])
    # The plain sampler, learning only from recorded infeasible trials, keeps hitting it.
    plain = _infeasible_by_trial(demo, None, 40)
    assert sum(plain[20:]) >= 3
