"""``sweep ui`` serves the sweep's MLflow store on loopback, runs and artifacts included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow import MlflowClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    port = _free_port()
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
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the UI did not start in 120 s"
                time.sleep(0.5)
        found = _get(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})
        assert "ui-study" in [e["name"] for e in found["experiments"]]
        listed = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}")
        assert [f["path"] for f in listed["files"]] == ["config.yaml"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
