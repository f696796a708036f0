"""``sweep ui`` serves the sweep's MLflow store on loopback, runs and artifacts included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from cli_runs import free_port

from sweep.track.tracker import Tracker
from sweep.track.views import open_link, view_route


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


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
def test_ui_serves_the_store_links_each_study_once_it_answers_and_stops_its_server(
    stop: signal.Signals, tmp_path: Path, sweep_home: Path
) -> None:
    tracker = Tracker(f"sqlite:///{sweep_home / 'mlflow.db'}", "linked")
    tracker.ensure_parent(optuna.create_study(study_name="linked"), {})  # a study's experiment
    Tracker(f"sqlite:///{sweep_home / 'mlflow.db'}", "sweep-teachers")  # no study: no link
    run = tracker.client.create_run(tracker.experiment_id)
    note = tmp_path / "config.yaml"
    note.write_text("student: {family: dsconv}\n")
    tracker.client.log_artifact(run.info.run_id, str(note))
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "ui", "--port", str(port)],
        env={**os.environ, "SWEEP_HOME": str(sweep_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    assert ui.stdout is not None
    try:
        printed = [ui.stdout.readline()]
        assert printed[0].startswith(f"MLflow UI starting at {base} (store sqlite:///")
        while not printed[-1].startswith("  study "):
            printed.append(ui.stdout.readline())
            assert printed[-1], printed  # the output ended before any link
        # The first link printed answers at once: the server was up before it was shown.
        with urllib.request.urlopen(printed[-1].split(": ", 1)[1].strip(), timeout=2) as page:
            assert page.status == 200
        printed.append(ui.stdout.readline())
        # The terminal shows sweep's lines only; the server's own output is in its log.
        assert printed[1:] == [
            f"MLflow UI at {base}; Ctrl-C stops it\n",
            f"  study linked: {open_link(base, view_route(tracker.experiment_id))}\n",
            f"    its Pareto front: "
            f"{open_link(base, view_route(tracker.experiment_id, 'sweep-front'))}\n",
        ]
        assert "Uvicorn running on" in (sweep_home / "ui.log").read_text()
        found = _get(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})
        assert {"linked", "sweep-teachers"} <= {e["name"] for e in found["experiments"]}
        listed = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}")
        assert [f["path"] for f in listed["files"]] == ["config.yaml"]

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
        if ui.poll() is None:  # a failed assertion: stop it as a user would, server included
            ui.terminate()
            ui.wait(timeout=60)
    assert "study" not in ui.stdout.read()  # each link once


def test_a_server_that_cannot_start_is_one_line_naming_the_port_and_its_log(
    sweep_home: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ui = subprocess.run(
            [sys.executable, "-m", "sweep.cli", "ui", "--port", str(port)],
            env={**os.environ, "SWEEP_HOME": str(sweep_home)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert ui.returncode == 2
    log = sweep_home / "ui.log"
    assert ui.stderr.splitlines() == [
        f"sweep: error: --port {port}: the MLflow server stopped before it answered "
        f"({log.read_text().strip().splitlines()[-1].strip()}); its whole log: {log}"
    ]
    assert "address already in use" in ui.stderr.lower()
