"""Running the ``sweep`` CLI in fresh processes and reading back what it left.

Shared by the pool and worker tests: a tiny space, the CLI run to the end or in the
background, and the study and MLflow runs it wrote.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER
from runners.held import HeldTrial, all_held
from sweep.search.pareto import record
from sweep.search.storage import open_storage


def write_space(folder: Path, study: str, data: Path, epochs: int) -> Path:
    """A tiny two-parameter space; ``epochs`` sets how long a trial lasts."""
    document = {
        "study": study,
        "dataset": {**TINY_DATASET, "root": str(data)},
        "teacher": TINY_TEACHER,
        "sampler": {"name": "random", "seed": 0},
        "early_stopping": "none",
        "fixed": {**TINY_FIXED, "lr": 0.01, "epochs": epochs},
        "params": {
            "student.family": {"type": "categorical", "choices": ["dsconv"]},
            "student.widths.0": {"type": "int", "low": 8, "high": 16, "step": 8},
            "kd.alpha": {"type": "float", "low": 0.3, "high": 0.7},
        },
    }
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server: subprocess.Popen[str], url: str, seconds: float) -> None:
    """Poll ``url`` until it answers; fail with the server's output if it exits or is late."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, f"{url} did not answer in {seconds} s"
            time.sleep(0.3)


def cli_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "SWEEP_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sweep(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``sweep`` CLI to the end in a fresh process (in ``cwd`` when given)."""
    command = [sys.executable, "-m", "sweep.cli", *args]
    return subprocess.run(
        command, env=cli_env(home), cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _as_from_a_terminal() -> None:
    # A job started in the background by a non-interactive shell (CI runners, nohup ... &)
    # inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt. A user's
    # Ctrl-C comes from a terminal, where SIGINT is not ignored: start the CLI as it would be.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    """Start the ``sweep`` CLI in the background, with SIGINT as a terminal would leave it."""
    command = [sys.executable, "-m", "sweep.cli", *args]
    return subprocess.Popen(
        command,
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )


def wait_for_trial_with_run(home: Path, study: str, pool: subprocess.Popen[str]) -> HeldTrial:
    """Wait until a worker holds a trial whose MLflow run exists (it is mid-trial)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and pool.poll() is None:
        held = [h for h in all_held(home, study) if h.run_id is not None]
        if held:
            return held[0]
        time.sleep(0.02)
    out, err = pool.communicate(timeout=60)
    raise AssertionError(f"no worker took a trial\n{out}\n{err}")


def load(home: Path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(str(home / "optuna.journal")))


def finished(study: optuna.Study) -> int:
    return sum(record(t).finished for t in study.get_trials(deepcopy=False))


def runs(home: Path, study: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def assert_one_parent_one_child_per_trial(
    home: Path, study: optuna.Study, interrupted: bool = False
) -> list:
    """One parent; every trial has exactly one child run under it; nothing RUNNING.

    After Ctrl-C (``interrupted``), a trial stopped before its run existed may have none.
    """
    _, found = runs(home, study.study_name)
    parents = [r for r in found if r.data.tags.get("sweep.role") == "study"]
    assert len(parents) == 1
    assert study.user_attrs["mlflow_parent_run_id"] == parents[0].info.run_id
    children = [r for r in found if r.data.tags.get("sweep.role") == "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    numbers = [int(r.data.tags["optuna.trial"]) for r in children]
    trials = study.get_trials(deepcopy=False)
    assert len(numbers) == len(set(numbers)), f"a trial has two runs: {sorted(numbers)}"
    assert set(numbers) <= {t.number for t in trials}
    if not interrupted:
        assert sorted(numbers) == [t.number for t in trials]
    # Ctrl-C may stop a trial before its run exists (or before the trial names its run);
    # every trial that ended any other way has its run, named in its user attrs.
    ended = [t for t in trials if t.state != TrialState.FAIL]
    by_id = {r.info.run_id: int(r.data.tags["optuna.trial"]) for r in children}
    assert all(by_id.get(t.user_attrs.get("mlflow_run_id")) == t.number for t in ended)
    assert not [r for r in found if r.info.status == "RUNNING"]
    return children
