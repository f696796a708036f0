"""The multi-host topology for real: PostgreSQL, an MLflow tracking server, two processes.

One PostgreSQL server holds the ``optuna`` and ``mlflow`` databases, made by the compose
stack's own init script; ``mlflow server`` runs on it with proxied artifacts, as in
docker-compose.yml. Then the real CLI runs as the stack runs it: ``sweep run --workers 1``
creates the study and works on it while ``sweep worker`` joins the same study from a second
process. What they leave is read back through Optuna's and MLflow's own clients.

Everything listens on 127.0.0.1 only. PostgreSQL's binaries must be installed (``.ci/run``
does it); without them this module fails, it does not skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState
from services import (
    MlflowServer,
    PostgresServer,
    create_databases,
    start_mlflow,
    start_postgres,
    wait_all,
)

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER

STUDY = "topology"
TRIALS = 4
SPACE = {
    "study": STUDY,
    "dataset": TINY_DATASET,
    "teacher": TINY_TEACHER,
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "early_stopping": "none",
    # Two epochs, so a trial lasts long enough for the second process to take some.
    "fixed": {**TINY_FIXED, "epochs": 2, "lr": 0.01},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv"]},
        "student.widths.0": {"type": "int", "low": 8, "high": 16, "step": 8},
        "kd.alpha": {"type": "float", "low": 0.3, "high": 0.7},
    },
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class Stack:
    """The running services."""

    postgres: PostgresServer
    mlflow: MlflowServer

    @property
    def optuna_url(self) -> str:
        return self.postgres.url("optuna")


@dataclass
class Swept:
    """What the two processes left, and how long they took."""

    stack: Stack
    study: optuna.Study
    client: MlflowClient
    logs: dict[str, str]
    seconds: float


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL with the stack's two databases, and an MLflow server on it."""
    try:
        postgres = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        create_databases(postgres)
        mlflow = start_mlflow(postgres.url("mlflow"), tmp_path_factory.mktemp("mlflow"))
        try:
            yield Stack(postgres, mlflow)
        finally:
            mlflow.stop()
    finally:
        postgres.stop()


def _sweep(home: Path, log: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """Start the installed CLI as a user would, in a fresh process (and process group)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sweep.cli", *args],
            env={**env, "SWEEP_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_study(url: str, run: subprocess.Popen, timeout: float) -> None:
    """Wait until ``sweep run`` has created the study.

    Read with plain SQL: opening an Optuna storage here would create Optuna's tables itself,
    racing the process under test.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        try:
            with psycopg.connect(url) as conn:
                found = conn.execute(
                    "SELECT 1 FROM studies WHERE study_name = %s", (STUDY,)
                ).fetchone()
            if found:
                return
        except psycopg.errors.UndefinedTable:
            pass  # Optuna's tables do not exist yet.
        time.sleep(0.2)


@pytest.fixture(scope="module")
def swept(stack: Stack, tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> Swept:
    """``sweep run --workers 1`` and a ``sweep worker`` joining it, on the real services."""
    tmp = tmp_path_factory.mktemp("topology")
    space = tmp / "topology.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    # One SWEEP_HOME, as two processes on one host share it: the caches and the teacher are
    # built once, and the host's lock makes the count exact (across hosts it may overshoot
    # by the trials in flight).
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = stack.mlflow.url
    logs = {"run": tmp / "run.log", "worker": tmp / "worker.log"}
    started = time.monotonic()
    run = _sweep(
        home,
        logs["run"],
        env,
        "run",
        "--space",
        str(space),
        "--trials",
        str(TRIALS),
        "--workers",
        "1",
        "--storage",
        stack.optuna_url,
        "--data-dir",
        str(food11_dir),
        "--no-progress",
    )
    processes = {"run": run}
    try:
        _wait_for_study(stack.optuna_url, run, timeout=180)
        processes["worker"] = _sweep(
            home, logs["worker"], env, "worker", "--study", STUDY, "--storage", stack.optuna_url
        )
    finally:
        codes = wait_all(processes, timeout=420)
    seconds = time.monotonic() - started
    text = {name: path.read_text(errors="replace") for name, path in logs.items() if path.exists()}
    for name, code in codes.items():
        assert code == 0, (
            f"{name} exited with {code}\n--- {name} ---\n{text.get(name, '')[-4000:]}"
            f"\n--- mlflow server ---\n{stack.mlflow.log_tail(2000)}"
        )
    assert "worker" in codes, f"the study never appeared\n{text.get('run', '')[-4000:]}"
    study = optuna.load_study(study_name=STUDY, storage=stack.optuna_url)
    print(f"\ntopology: sweep run + sweep worker took {seconds:.1f} s")
    return Swept(stack, study, MlflowClient(tracking_uri=stack.mlflow.url), text, seconds)


def test_init_script_made_both_databases_and_is_idempotent(stack: Stack) -> None:
    create_databases(stack.postgres)  # a second run changes nothing and does not fail
    databases = stack.postgres.databases()
    assert databases.count("optuna") == 1 and databases.count("mlflow") == 1


def test_optuna_holds_exactly_the_target(swept: Swept) -> None:
    trials = swept.study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert TrialState.FAIL not in states, [t.user_attrs for t in trials if t.state.name == "FAIL"]
    finished = [
        t for t in trials if t.state in FINISHED and t.user_attrs.get("state") != "infeasible"
    ]
    assert len(finished) == TRIALS
    assert all(t.state == TrialState.COMPLETE for t in finished)  # no early stopping here


def test_mlflow_holds_one_parent_and_every_trial_once(swept: Swept) -> None:
    client = swept.client
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "study"]
    assert len(parents) == 1
    parent_id = parents[0].info.run_id
    assert swept.study.user_attrs["mlflow_parent_run_id"] == parent_id
    children = [r for r in runs if r is not parents[0]]
    assert all(r.data.tags.get("mlflow.parentRunId") == parent_id for r in children)
    assert all(r.info.status != "RUNNING" for r in children)
    numbers = [r.data.tags["optuna.trial"] for r in children]
    assert len(numbers) == len(set(numbers)), f"a trial has two runs: {sorted(numbers)}"
    trials = swept.study.get_trials(deepcopy=False)
    assert sorted(numbers, key=int) == [str(t.number) for t in trials]
    by_number = {r.data.tags["optuna.trial"]: r for r in children}
    for trial in trials:
        run = by_number[str(trial.number)]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["best_val_acc"] == pytest.approx(trial.value)


def test_both_processes_ran_trials(swept: Swept) -> None:
    """The joining worker took part: it reports the trials it ran, and they are not all.

    The worker reports how many trials it ran, and every child run is tagged with the
    process that ran it (``sweep.worker``). Both processes wait for the same teacher and
    caches (one SWEEP_HOME), then start trials at about the same moment, each trial lasting
    seconds: the worker gets some.
    """
    summary = r"worker: ran (\d+) trials; study \S+ holds (\d+)/(\d+)"
    found = re.search(summary, swept.logs["worker"])
    assert found is not None, swept.logs["worker"][-2000:]
    ran, holds, target = (int(g) for g in found.groups())
    assert (holds, target) == (TRIALS, TRIALS)
    assert 1 <= ran < TRIALS, f"the worker ran {ran} of {TRIALS} trials"
    experiment = swept.client.get_experiment_by_name(STUDY)
    runs = swept.client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'trial'")
    per_process = Counter(r.data.tags["sweep.worker"] for r in runs)
    assert sorted(per_process.values()) == sorted([ran, TRIALS - ran]), per_process


def test_artifacts_go_through_the_server(swept: Swept) -> None:
    """Clients send artifacts to the server (``mlflow-artifacts:/``), which stores them."""
    client = swept.client
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    trial = swept.study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])[0]
    names = {a.path for a in client.list_artifacts(trial.user_attrs["mlflow_run_id"])}
    assert "config.yaml" in names
    stored = list((swept.stack.mlflow.log_path.parent / "artifacts").rglob("config.yaml"))
    assert len(stored) >= TRIALS
