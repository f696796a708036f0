"""Where sweep keeps things: SWEEP_HOME, the journal, the MLflow store and its artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.paths import (
    artifact_location,
    default_storage,
    study_lock_path,
    sweep_home,
    tracking_uri,
)


def test_home_defaults_to_sweep_runs_and_follows_sweep_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWEEP_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert sweep_home() == tmp_path / "sweep-runs"
    monkeypatch.setenv("SWEEP_HOME", str(tmp_path / "elsewhere"))
    assert sweep_home() == tmp_path / "elsewhere"


def test_local_stores_live_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_storage(tmp_path) == str(tmp_path / "optuna.journal")
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_location(tmp_path) == (tmp_path / "mlartifacts").as_uri()
    assert study_lock_path(tmp_path, "demo") == tmp_path / "workers" / "demo.lock"


def test_a_tracking_server_keeps_its_own_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert artifact_location(tmp_path) is None
