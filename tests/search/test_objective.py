"""The objective's guards: a Ctrl-C never splits a trial from its run; a trial's result
depends on its settings and seed alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_runs import load, runs, write_space

from runners.local import run_sweep
from sweep.search import objective
from sweep.search.space import load_space
from sweep.teacher.trial_data import study_soft_labels


def test_a_trials_result_does_not_depend_on_what_ran_before_it(
    tmp_path: Path, food11_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same one-trial study twice; in the second, getting the soft labels draws from the
    # global RNG first, as building the cache does for whichever trial comes to it first.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = load_space(str(write_space(tmp_path, "same", food11_dir, epochs=1)), [], None)
    results = []
    for home, draws in ((tmp_path / "first", 0), (tmp_path / "second", 1000)):

        def soft_labels(*args: object, draws: int = draws, **kwargs: object) -> object:
            torch.rand(draws)
            return study_soft_labels(*args, **kwargs)

        monkeypatch.setattr(objective, "study_soft_labels", soft_labels)
        run_sweep(space, 1, home=home, show_progress=False)
        _, found = runs(home, "same")
        [child] = [r for r in found if r.data.tags.get("sweep.role") == "trial"]
        results.append({k: child.data.metrics[k] for k in ("train_loss", "val_loss", "val_acc")})
    assert results[0] == results[1]


def test_an_over_budget_proposal_says_by_how_much_in_its_user_attrs(
    tmp_path: Path, food11_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # optuna-dashboard's trial table shows user attributes, not constraints.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_space(tmp_path, "over", food11_dir, epochs=1)
    document = yaml.safe_load(path.read_text())
    # 37,227 parameters at 8, 74,179 at 256: the budget is 60,000.
    document["params"]["student.widths.0"] = {"type": "categorical", "choices": [8, 256]}
    path.write_text(yaml.safe_dump(document))
    run_sweep(load_space(str(path), [], None), 2, home=tmp_path / "home", show_progress=False)
    trials = load(tmp_path / "home", "over").trials
    over = {
        t.number: t.user_attrs["params"] - 60_000
        for t in trials
        if t.params["student.widths.0"] == 256
    }
    assert over and all(v > 0 for v in over.values())
    for trial in trials:
        assert trial.user_attrs.get("params_over_budget") == over.get(trial.number)
