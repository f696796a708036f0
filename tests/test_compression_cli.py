"""End to end: compression stages through the real ``sweep`` CLI, read back as a user would.

A wide student is pruned to the budget while it trains, quantized to int8, exported with
``--int8`` and reloaded; feature distillation, mutual learning and the teacher assistant
each run one trial combined with another stage (unstructured pruning counted nonzero,
structured pruning under FitNet's regressor, low-rank factorization).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from test_cli import sweep_cli

from conftest import TINY_DATASET, TINY_TEACHER
from sweep.compress.plan import build_planned
from sweep.compress.quantize import load_quantized
from sweep.config import from_dict
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.teacher.checkpoints import load_checkpoint_model

BASE = {
    "dataset": TINY_DATASET,
    "teacher": TINY_TEACHER,
    "sampler": {"name": "random", "seed": 0},
    "early_stopping": "none",
}
WIDE = [96, 192, 384]  # 98,915 parameters at 3 classes with an 8-channel stem

PRUNED = {
    **BASE,
    "study": "pruned",
    "prune": {
        "method": "structured",
        "target_params": 60000,
        "steps": 2,
        "start_epoch": 1,
        "finetune_epochs": 1,
    },
    "quantize": {"int8": True, "calibration_batches": 2},
    "fixed": {
        "epochs": 3,
        "batch_size": 16,
        "lr": 0.01,
        "student.stem": 8,
        "student.widths": WIDE,
    },
    "params": {"prune.importance": {"type": "categorical", "choices": ["magnitude", "taylor"]}},
}


def _client(home: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def _study(home: Path, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(home / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def _children(home: Path, study: str) -> list:
    client = _client(home)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compression") / "home"


@pytest.fixture(scope="module")
def pruned(home: Path, food11_dir: Path) -> Path:
    space = home.parent / "pruned.yaml"
    space.write_text(yaml.safe_dump(PRUNED))
    run = sweep_cli(
        home, "run", "--space", str(space), "--trials", "2", "--data-dir", str(food11_dir)
    )
    assert run.returncode == 0, run.stderr
    return space


def test_wide_students_are_pruned_into_the_budget(home: Path, pruned: Path) -> None:
    wide = count_params(create_student("dsconv", 3, {"stem": 8, "widths": WIDE}))
    assert wide > 60_000
    trials = _study(home, "pruned").get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in trials:
        assert trial.user_attrs["initial_params"] == wide
        assert 57_000 <= trial.user_attrs["params"] <= 60_000
    for run in _children(home, "pruned"):
        metrics = run.data.metrics
        assert run.info.status == "FINISHED"
        assert metrics["params"] == metrics["params_dense"] <= 60_000
        assert 0 < metrics["prune_ratio"] < 1
        # The best epoch comes after the last pruning step (epoch 2 of 0..2).
        assert metrics["best_epoch"] == 2


def test_int8_is_logged_next_to_the_float_model(home: Path, pruned: Path) -> None:
    client = _client(home)
    for run in _children(home, "pruned"):
        metrics = run.data.metrics
        assert 0.0 <= metrics["int8_val_acc"] <= 1.0
        assert metrics["int8_bytes"] < metrics["float_bytes"]
        paths = [a.path for a in client.list_artifacts(run.info.run_id, "int8")]
        assert paths == ["int8/student_int8.pt2"]


def test_export_int8_reloads_the_pruned_student(home: Path, pruned: Path, tmp_path: Path) -> None:
    out = tmp_path / "best"
    export = sweep_cli(home, "export", "--study", "pruned", "--out", str(out), "--int8")
    assert export.returncode == 0, export.stderr
    assert "int8: val_acc" in export.stdout
    summary = json.loads((out / "export.json").read_text())
    assert summary["reloaded_val_acc"] == pytest.approx(summary["logged_val_acc"])
    assert summary["int8_bytes"] < summary["float_bytes"]
    # What a user rebuilds the pruned architecture from: student_config.yaml alone.
    config = yaml.safe_load((out / "student_config.yaml").read_text())
    cfg = from_dict(config["trial_config"])
    model = build_planned(cfg, config["num_classes"], config["prune_ratio"])
    model.load_state_dict(torch.load(out / "student_best.ckpt", weights_only=True))
    assert count_params(model) == summary["params"] <= 60_000
    # `sweep prune-curve` finds the same architecture from the exported folder.
    loaded, family = load_checkpoint_model(out / "student_best.ckpt", config["num_classes"])
    assert family == "dsconv"
    assert count_params(loaded) == summary["params"]
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        float_logits = model.eval()(images)
        int8_logits = load_quantized(out / "student_int8.pt2")(images)
    assert int8_logits.shape == float_logits.shape
    assert torch.isfinite(int8_logits).all()


@pytest.mark.parametrize(
    ("method", "stage", "count"),
    [
        ("fitnet", {"prune": {"method": "structured", "rate": 0.3, "start_epoch": 1}}, "dense"),
        ("dml", {"prune": {"method": "unstructured", "rate": 0.5, "steps": 2}}, "nonzero"),
        ("takd", {"lowrank": {"rank_ratio": 0.5, "start_epoch": 1}}, "dense"),
    ],
)
def test_kd_methods_train_with_a_compression_stage(
    home: Path, food11_dir: Path, method: str, stage: dict, count: str
) -> None:
    space = {
        **BASE,
        "study": f"kd-{method}",
        "budget": {"count": count},
        "kd": {"method": method, "assistant_width": 16, "assistant_epochs": 1},
        **stage,
        "fixed": {"epochs": 2, "batch_size": 16, "lr": 0.01, "student.stem": 8},
        "params": {"kd.alpha": {"type": "float", "low": 0.3, "high": 0.7}},
    }
    path = home.parent / f"kd-{method}.yaml"
    path.write_text(yaml.safe_dump(space))
    run = sweep_cli(
        home, "run", "--space", str(path), "--trials", "1", "--data-dir", str(food11_dir)
    )
    assert run.returncode == 0, run.stderr
    (child,) = _children(home, f"kd-{method}")
    metrics = child.data.metrics
    assert child.info.status == "FINISHED"
    assert child.data.params["kd.method"] == method
    plain = count_params(create_student("dsconv", 3, {"stem": 8}))
    if method == "fitnet":
        assert metrics["feature_loss"] > 0
        assert metrics["params"] < plain  # channels pruned under the regressor
    if method == "dml":
        assert metrics["peer_loss"] > 0
        assert metrics["params_dense"] == plain
        assert metrics["params"] == metrics["params_nonzero"] < plain
    if method == "takd":
        assert list((home / "assistants").glob("dsconv16-*.ckpt"))
        assert metrics["params"] < plain  # factorized
