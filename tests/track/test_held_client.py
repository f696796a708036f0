"""sweep.track.held_client: a Ctrl-C inside a write to the store lands after the write."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
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


class _Uploads:
    """Stands in for an MlflowClient whose artifact upload is interrupted half-way."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def log_artifact(self, run_id: str, path: str) -> None:
        self.sent.append("first half")
        os.kill(os.getpid(), signal.SIGINT)
        self.sent.append("second half")


def test_an_artifact_transfer_is_not_held_back() -> None:
    # It touches no store row and may take long (a model to a server): Ctrl-C stops it.
    uploads = _Uploads()
    with interrupts.honoured(), pytest.raises(KeyboardInterrupt):
        HeldClient(uploads).log_artifact("run", "model.pt")  # type: ignore[arg-type]
    assert uploads.sent == ["first half"]
