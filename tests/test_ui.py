"""``sweep ui`` serves the sweep's MLflow store on loopback, runs and artifacts included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from cli_runs import free_port, wait_until_serving
from mlflow import MlflowClient

from sweep.track.tracker import Tracker, runs_view_link


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_ui_serves_the_store_on_loopback(tmp_path: Path, sweep_home: Path) -> None:
    sweep_home.mkdir(parents=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_home / 'mlflow.db'}")
    experiment = client.create_experiment(
        "ui-study", artifact_location=(sweep_home / "mlartifacts").as_uri()
    )
    run = client.create_run(experiment)
    note = tmp_path / "config.yaml"
    note.write_text("student: {family: dsconv}\n")
    client.log_artifact(run.info.run_id, str(note))

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "ui", "--port", str(port)],
        env={**os.environ, "SWEEP_HOME": str(sweep_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(server, f"{base}/health", 120)
        found = _get(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})
        assert "ui-study" in [e["name"] for e in found["experiments"]]
        listed = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}")
        assert [f["path"] for f in listed["files"]] == ["config.yaml"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _server_group(ui_pid: int) -> int:
    """The process group of the ``mlflow server`` that ``sweep ui`` started (its child)."""
    children = Path(f"/proc/{ui_pid}/task/{ui_pid}/children").read_text().split()
    assert len(children) == 1, children
    return os.getpgid(int(children[0]))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_ui_prints_each_studys_link_and_stops_its_server(
    stop: signal.Signals, sweep_home: Path
) -> None:
    tracker = Tracker(f"sqlite:///{sweep_home / 'mlflow.db'}", "linked")
    tracker.ensure_parent(optuna.create_study(study_name="linked"), {})  # a study's experiment
    Tracker(f"sqlite:///{sweep_home / 'mlflow.db'}", "sweep-teachers")  # no study: no link
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "ui", "--port", str(port)],
        env={**os.environ, "SWEEP_HOME": str(sweep_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(ui, f"{base}/health", 120)
        server = _server_group(ui.pid)
        assert server != os.getpgid(ui.pid)  # its own group: a terminal's Ctrl-C is forwarded
        ui.send_signal(stop)
        assert ui.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while _group_alive(server):  # the server and its workers, all gone
            assert time.monotonic() < deadline, "mlflow server outlived sweep ui"
            time.sleep(0.2)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{base}/health", timeout=2)
    finally:
        if ui.poll() is None:
            ui.kill()
    link = runs_view_link(base, tracker.experiment_id)
    links = [line for line in ui.stdout.read().splitlines() if line.startswith("  study ")]
    assert links == [f"  study linked: {link}"]
