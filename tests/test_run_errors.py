"""Bad input and stop conditions of ``sweep run``: one line naming file and key, exit 2,
nothing written; infeasible proposals recorded and never trained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER
from sweep.cli import main

SMALL = {
    "study": "errs",
    "dataset": TINY_DATASET,
    "teacher": TINY_TEACHER,
    "sampler": {"name": "random", "seed": 3},
    "early_stopping": "none",
    "fixed": {**TINY_FIXED, "kd.alpha": 0.0},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv"]},
        "student.widths.2": {"type": "int", "low": 8, "high": 4096},
    },
}


def _space(tmp_path: Path, food11_dir: Path, **changes: object) -> Path:
    document = yaml.safe_load(yaml.safe_dump(SMALL))
    document["dataset"]["root"] = str(food11_dir)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            document[section][name] = value
        else:
            document[section] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _nothing_written(home: Path) -> bool:
    return not (home / "optuna.journal").exists() and not (home / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "space.yaml: colour: unknown key"),
        ({"fixed__epochs": "ten"}, "space.yaml: fixed.epochs: must be an integer"),
        ({"fixed__student.widths": "wide"}, "student.widths.2: 'widths' holds a single value"),
        (
            {"params__lr": {"type": "float", "low": 1.0, "high": 0.1}},
            "space.yaml: params.lr.low: low (1.0) is greater than high (0.1)",
        ),
        (
            {"teacher__checkpoint": "/nowhere/teacher.ckpt"},
            "space.yaml: teacher.checkpoint: /nowhere/teacher.ckpt: no such file",
        ),
        ({"dataset__root": "/nowhere/food11"}, "/nowhere/food11"),
        (
            {"budget": {"max_params": 100}},
            "space.yaml: budget.max_params: no model in this space fits 100 parameters",
        ),
        ({"fixed__student.depth": 2}, "space.yaml: student.depth: unknown option"),
        (
            {"fixed__dataset.cache": False, "fixed__kd.alpha": 0.5},
            "space.yaml: kd.teacher_mode: cached soft labels replay the decoded cache",
        ),
    ],
)
def test_bad_space_is_one_line_exit_2_nothing_written(
    tmp_path: Path,
    food11_dir: Path,
    sweep_home: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict,
    expected: str,
) -> None:
    path = _space(tmp_path, food11_dir, **changes)
    code = main(["run", "--space", str(path), "--trials", "2", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sweep: error: ")
    assert expected in err
    assert _nothing_written(sweep_home)


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("redis://127.0.0.1/0", "--storage: redis://127.0.0.1/0: unknown scheme 'redis'"),
        ("postgresql://me:secret@127.0.0.1:1/none", "--storage: postgresql://me:***@"),
    ],
)
def test_bad_storage_url(
    tmp_path: Path,
    food11_dir: Path,
    sweep_home: Path,
    capsys: pytest.CaptureFixture[str],
    storage: str,
    expected: str,
) -> None:
    path = _space(tmp_path, food11_dir)
    code = main(["run", "--space", str(path), "--trials", "1", "--storage", storage])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "secret" not in err
    assert len(err.splitlines()) == 1
    assert _nothing_written(sweep_home)


def test_bad_override_and_trials(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _space(tmp_path, food11_dir)
    assert main(["run", "--space", str(path), "--trials", "1", "--set", "fixed.lr=fast"]) == 2
    assert "fixed.lr: must be a number" in capsys.readouterr().err
    assert main(["run", "--space", str(path), "--trials", "0"]) == 2
    assert "--trials: must be at least 1" in capsys.readouterr().err
    assert main(["status", "--study", "nope"]) == 2
    assert "--study: no study named 'nope'" in capsys.readouterr().err


def test_infeasible_proposals_are_recorded_never_trained_and_not_counted(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # widths.2 up to 4096: most random proposals are far over 60k parameters.
    path = _space(tmp_path, food11_dir)
    assert main(["run", "--space", str(path), "--trials", "2", "--no-progress"]) == 0
    storage = JournalStorage(JournalFileBackend(str(sweep_home / "optuna.journal")))
    study = optuna.load_study(study_name="errs", storage=storage)
    over = [t for t in study.trials if t.user_attrs.get("state") == "infeasible"]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 2
    assert over, "the seeded sampler proposes over-budget models in this space"
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_home / 'mlflow.db'}")
    for trial in over:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["params"] > 60_000
        assert trial.constraints["params_over_budget"] == trial.user_attrs["params"] - 60_000
        assert not trial.intermediate_values  # never trained
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["state"] == "infeasible"
        assert "val_acc" not in run.data.metrics and "train_loss" not in run.data.metrics
        assert run.data.metrics["params"] == trial.user_attrs["params"]


def test_a_space_proposing_only_infeasible_models_stops_with_a_message(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the 8-wide corner fits; the sampler nearly always proposes far wider models.
    path = _space(
        tmp_path,
        food11_dir,
        max_infeasible_streak=3,
        params={"student.widths.2": {"type": "int", "low": 8, "high": 100_000}},
        budget={"max_params": 13_000},
    )
    code = main(["run", "--space", str(path), "--trials", "5", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "params: the last 3 proposals were all over the parameter budget" in err
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("errs")
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert not running
