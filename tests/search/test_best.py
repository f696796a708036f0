"""A study's best student: found from the storage, loaded from its run, registered once."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import write_space
from mlflow import MlflowClient

from runners.local import run_sweep
from sweep.errors import SweepError
from sweep.models.budget import count_params
from sweep.paths import study_lock_path
from sweep.search.best import REGISTERED_ATTR, choose_model, load_trial_model, register_best
from sweep.search.space import load_space
from sweep.search.study import read_study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> Path:
    """A finished 2-trial study (1 epoch each) in its own home folder."""
    tmp = tmp_path_factory.mktemp("best")
    space = load_space(str(write_space(tmp, "best", food11_dir, epochs=1)), [], None)
    home = tmp / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        summary = run_sweep(space, 2, home=home, show_progress=False)
    assert summary.best is not None
    return home


def test_an_unfinalized_study_gives_its_most_accurate_feasible_trial(
    study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    chosen, tracker = choose_model("best", None, study)
    best = chosen.trial
    assert (chosen.stage, chosen.source) == ("search", best.number)
    _, space, records = read_study("best", None, study)
    complete = [r for r in records if r.state == "complete"]
    assert best.val_acc == max(r.val_acc for r in complete)
    assert tracker.client.get_run(best.run_id).data.tags["optuna.trial"] == str(best.number)
    with pytest.raises(SweepError, match="--study: no study named 'nope'"):
        choose_model("nope", None, study)


def test_the_best_trial_loads_at_its_logged_size(
    study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    chosen, tracker = choose_model("best", None, study)
    best = chosen.trial
    model, artifact = load_trial_model(tracker, best)
    assert artifact.family == "dsconv" and artifact.num_classes == 3
    assert count_params(model) == best.params
    assert not model.training


def test_the_best_model_is_registered_once(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    chosen, tracker = choose_model("best", None, study)
    best = chosen.trial
    optuna_study, _, _ = read_study("best", None, study)
    assert optuna_study.user_attrs[REGISTERED_ATTR] == best.number  # by run_sweep's close
    lock = study_lock_path(study, "best")
    register_best(optuna_study, tracker, best, lock)  # again: nothing new
    optuna_study.set_user_attr(REGISTERED_ATTR, None)  # as another process that closed it
    register_best(optuna_study, tracker, best, lock)  # sees the registry's version
    assert optuna_study.user_attrs[REGISTERED_ATTR] == best.number
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'best'")
    assert [v.run_id for v in versions] == [best.run_id]
    assert client.get_model_version_by_alias("best", "best").run_id == best.run_id
