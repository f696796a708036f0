"""sweep.track.held_client: a Ctrl-C inside a write to the store lands after the write."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import Metric

from sweep import interrupts
from sweep.track.held_client import HeldClient


@pytest.fixture
def ctrl_c_inside_the_metrics_insert() -> Iterator[None]:
    """Send this process SIGINT from inside the SQL statement that writes a metric."""

    def send(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO METRICS"):
            os.kill(os.getpid(), signal.SIGINT)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", send)
    yield
    sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", send)


def test_a_ctrl_c_during_a_metric_write_leaves_the_run_endable(
    tmp_path: Path, ctrl_c_inside_the_metrics_insert: None
) -> None:
    client = HeldClient(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    run_id = client.create_run(client.create_experiment("held")).info.run_id
    metric = Metric("val_acc", 0.5, int(time.time() * 1000), 0)
    with interrupts.honoured(), pytest.raises(KeyboardInterrupt):
        client.log_batch(run_id, metrics=[metric], synchronous=True)
    # The write finished first, and the store is free: ending the run does not wait out
    # SQLite's lock timeout ("database is locked") as it did when the signal tore the write.
    client.set_terminated(run_id, status="FAILED")
    run = client.get_run(run_id)
    assert run.data.metrics == {"val_acc": 0.5}
    assert run.info.status == "FAILED"


def test_attributes_that_are_not_methods_are_passed_through(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert HeldClient(MlflowClient(tracking_uri=uri)).tracking_uri == uri


@pytest.fixture
def ctrl_c_inside_the_next_select() -> Iterator[Callable[[], None]]:
    """Arm: send this process SIGINT from inside the next SELECT that loads a run's tags."""
    armed: list[bool] = []

    def send(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if armed and statement.lstrip().upper().startswith("SELECT TAGS."):
            armed.clear()
            os.kill(os.getpid(), signal.SIGINT)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", send)
    yield lambda: armed.append(True)
    sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", send)


def test_a_ctrl_c_while_an_artifact_call_reads_the_store_lands_after_it(
    tmp_path: Path, ctrl_c_inside_the_next_select: Callable[[], None]
) -> None:
    # An artifact call reads the store first (the run's artifact location). CI once tore a
    # trial's config.yaml there: the file never came, and the run's end met a locked store.
    client = HeldClient(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    experiment = client.create_experiment("held", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    ctrl_c_inside_the_next_select()
    with interrupts.honoured(), pytest.raises(KeyboardInterrupt):
        client.log_text(run_id, "epochs: 1\n", "config.yaml")
    client.set_terminated(run_id, status="FAILED")
    assert client.get_run(run_id).info.status == "FAILED"
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
