"""``sweep ui``: the MLflow UI on the sweep's store, with a link to each study's runs view.

``mlflow server`` runs as a child in its own process group (it starts workers of its own);
SIGINT, SIGTERM and SIGHUP sent to ``sweep ui`` stop that whole group, so no server is left
behind when ``sweep ui`` is stopped or its terminal closes. The server's own output (a few
dozen lines of start-up, deprecation warnings and one line per request) goes to
``<home>/ui.log``, so the terminal shows where the UI is and the study links.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.paths import sweep_home, tracking_uri, ui_log_path
from sweep.track.tracker import sqlite_file
from sweep.track.views import (
    FINAL_TRAININGS,
    FINAL_VIEW,
    FRONT_VIEW,
    STUDY_VIEW,
    VIEW_PREFIX,
    open_link,
    view_link,
    view_route,
)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_GRACE_SECONDS = 10
_POLL_SECONDS = 0.2
# MLflow answers within 10-30 s of its start; one still silent after this is stuck (its
# workers can die while its parent waits on).
_START_SECONDS = 180


def study_links(
    uri: str, ui_url: str, via_opener: bool = False
) -> Iterator[tuple[str, dict[str, str]]]:
    """(study, {view: link}) for every study experiment in the store (those that carry
    sweep's views); the final stage's view only once the study has final trainings.

    ``via_opener``: the links go through ``sweep ui``'s page that has the browser remember
    MLflow's Model training face (:mod:`sweep.track.ui_app`); a tracking server of its own
    serves MLflow alone, so its links open the views directly.
    """
    client = MlflowClient(tracking_uri=uri)
    for experiment in client.search_experiments():
        if f"{VIEW_PREFIX}{STUDY_VIEW}" not in experiment.tags:
            continue
        views = [STUDY_VIEW, FRONT_VIEW]
        final = client.search_runs([experiment.experiment_id], FINAL_TRAININGS, max_results=1)
        if final:
            views.append(FINAL_VIEW)
        links = {}
        for view in views:
            route = view_route(experiment.experiment_id, view)
            links[view] = (open_link if via_opener else view_link)(ui_url, route)
        yield experiment.name, links


def serve_ui(host: str, port: int, home: Path | None = None) -> int:
    """Serve the UI until stopped; returns the server's exit code (0 when stopped by us)."""
    home = home or sweep_home()
    uri = tracking_uri(home)
    if uri.startswith(("http://", "https://")):
        print(f"MLflow is served at {uri}")
        _print_links(uri, uri)
        return 0
    # This interpreter's MLflow (an `mlflow` on PATH may be another environment's, without
    # sweep's app); --app-name: MLflow's server with sweep's page that opens it in Model
    # training (sweep.track.ui_app).
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port), "--app-name", "sweep"]
    url = f"http://{host}:{port}"
    log_path = ui_log_path(home)
    print(f"MLflow UI starting at {url} (store {uri}; server log {log_path}) ...", flush=True)
    home.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    stopped: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        _stop_group(server)

    previous = {s: signal.signal(s, stop) for s in _STOP_SIGNALS}
    try:
        # The links only once the server answers: the first click must not fail.
        if not _wait_until_answering(server, host, port):
            if stopped:
                return 0
            state = (
                "stopped before it answered"
                if server.poll() is not None
                else f"did not answer in {_START_SECONDS} s"
            )
            raise SweepError(
                f"--port {port}: the MLflow server {state} ({_last_line(log_path)}); "
                f"its whole log: {log_path}"
            )
        print(f"MLflow UI at {url}; Ctrl-C stops it")
        database = sqlite_file(uri)
        if database is None or database.exists():  # a file not written yet holds no study
            _print_links(uri, url, via_opener=True)
        sys.stdout.flush()
        code = server.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_group(server)
    return 0 if stopped else code


def _last_line(log_path: Path) -> str:
    """The server's last words: the error that stopped it, as a rule."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "it printed nothing")


def _wait_until_answering(server: subprocess.Popen[bytes], host: str, port: int) -> bool:
    """Poll the server's health endpoint until it answers (True), or the server ends or
    stays silent for :data:`_START_SECONDS` (False)."""
    local = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    health = f"http://{'[' + local + ']' if ':' in local else local}:{port}/health"
    deadline = time.monotonic() + _START_SECONDS
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=2):
                return True
        except OSError:
            time.sleep(_POLL_SECONDS)
    return False


def _print_links(uri: str, url: str, via_opener: bool = False) -> None:
    for name, links in study_links(uri, url, via_opener):
        print(f"  study {name}: {links[STUDY_VIEW]}")
        print(f"    its Pareto front: {links[FRONT_VIEW]}")
        if FINAL_VIEW in links:
            print(f"    its final stage: {links[FINAL_VIEW]}")


def _stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, _GRACE_SECONDS), (signal.SIGKILL, _GRACE_SECONDS)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:  # the group is gone
            return
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the server has exited; its workers may linger a moment
            os.killpg(server.pid, 0)
        except ProcessLookupError:
            return
