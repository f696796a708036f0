"""Trials of dead workers: failed in Optuna and MLflow, retried with the same parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

import sweep.search.storage
from runners.held import HeldTrial, all_held, this_host, write_held
from runners.recovery import (
    Released,
    StaleTrialRetry,
    fail_orphans,
    reap_dead_workers,
    release_trial,
    retry_trial,
)
from sweep.search.storage import open_storage
from sweep.track.tracker import Tracker


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (creating one takes seconds); an experiment per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def setup(tmp_path: Path, tracking_uri: str, request: pytest.FixtureRequest) -> dict:
    """A journal study, and its MLflow experiment with the study's parent run."""
    storage = open_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(study_name="rec", storage=storage, direction="maximize")
    tracker = Tracker(tracking_uri, request.node.name)
    parent = tracker.ensure_parent(study, {})
    return {
        "home": tmp_path,
        "storage": storage,
        "study": study,
        "tracker": tracker,
        "parent": parent,
    }


def running_trial(s: dict) -> tuple[optuna.Trial, str]:
    """A trial mid-training: RUNNING, with parameters and a RUNNING MLflow child run."""
    trial = s["study"].ask()
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    trial.suggest_categorical("family", ["dsconv", "inverted_residual"])
    run_id = s["tracker"].start_trial(s["parent"], trial.number, trial.params)
    trial.set_user_attr("mlflow_run_id", run_id)
    return trial, run_id


def held(trial: optuna.Trial, pid: int, run_id: str | None) -> HeldTrial:
    return HeldTrial(pid, this_host(), "rec", trial._trial_id, trial.number, run_id)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_workers_trial_is_failed_ended_and_retried_once(setup: dict) -> None:
    s = setup
    study, client = s["study"], s["tracker"].client
    dead, dead_run = running_trial(s)
    alive, alive_run = running_trial(s)
    write_held(s["home"], held(dead, dead_pid(), None))  # killed before it recorded its run
    write_held(s["home"], held(alive, os.getpid(), alive_run))

    args = (study, s["storage"], s["tracker"], s["parent"], s["home"], 1)
    assert reap_dead_workers(*args) == [dead.number]
    assert reap_dead_workers(*args) == []  # once: no second retry

    failed = study.trials[dead.number]
    assert failed.state == TrialState.FAIL and "died" in failed.system_attrs["fail_reason"]
    run = client.get_run(dead_run)  # found by its tags though the held file had no run id
    assert run.info.status == "FAILED" and run.data.tags["state"] == "failed"
    assert study.trials[alive.number].state == TrialState.RUNNING
    assert client.get_run(alive_run).info.status == "RUNNING"
    assert [h.number for h in all_held(s["home"], "rec")] == [alive.number]

    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs == {"retry_of": dead.number}
    retry = study.ask()  # the retry comes first, with the failed trial's parameters
    assert retry.number == waiting[0].number
    assert retry.suggest_float("lr", 1e-3, 1e-1, log=True) == failed.params["lr"]
    assert (
        retry.suggest_categorical("family", ["dsconv", "inverted_residual"])
        == (failed.params["family"])
    )


def test_retries_stop_at_the_limit(setup: dict) -> None:
    study = setup["study"]
    first, _ = running_trial(setup)
    study.tell(first, state=TrialState.FAIL)
    assert retry_trial(study, study.trials[first.number], max_retries=1)
    again = study.ask()
    study.tell(again, state=TrialState.FAIL)
    frozen = study.trials[again.number]
    assert frozen.system_attrs["failed_trial"] == first.number  # Optuna's own convention
    assert not retry_trial(study, frozen, max_retries=1)
    assert retry_trial(study, frozen, max_retries=2)
    assert study.trials[-1].system_attrs["retry_history"] == [first.number, again.number]


def test_orphans_of_a_journal_study_fail_without_retry(setup: dict) -> None:
    s = setup
    orphan, orphan_run = running_trial(s)
    alive, _ = running_trial(s)
    write_held(s["home"], held(alive, os.getpid(), None))
    assert fail_orphans(s["study"], s["storage"], s["tracker"], s["parent"], s["home"]) == [
        orphan.number
    ]
    assert s["study"].trials[orphan.number].state == TrialState.FAIL
    assert s["study"].trials[alive.number].state == TrialState.RUNNING
    assert s["tracker"].client.get_run(orphan_run).info.status == "FAILED"
    assert not s["study"].get_trials(states=(TrialState.WAITING,))


@pytest.mark.filterwarnings("ignore::UserWarning")  # heartbeats outside study.optimize
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_database_heartbeat_fails_and_retries_a_silent_workers_trial(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep.search.storage, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(sweep.search.storage, "GRACE_SECONDS", 1)
    stale = StaleTrialRetry()
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", on_stale_trial=stale)
    study = optuna.create_study(study_name="rec", storage=storage, direction="maximize")
    tracker = Tracker(tracking_uri, "heartbeat")
    s = {"study": study, "tracker": tracker, "parent": tracker.ensure_parent(study, {})}
    stale.bind(tracker, s["parent"], max_retries=1)
    trial, run_id = running_trial(s)
    storage.record_heartbeat(trial._trial_id)  # then the worker goes silent
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[trial.number].state == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == study.trials[trial.number].params
    assert MlflowClient(tracker.tracking_uri).get_run(run_id).info.status == "FAILED"


def test_release_says_whether_a_retry_was_queued(setup: dict) -> None:
    s = setup
    study = s["study"]
    first, first_run = running_trial(s)
    args = (study, s["storage"], s["tracker"], s["parent"])
    released = release_trial(*args, held(first, dead_pid(), first_run), "died", 1)
    assert released == Released(failed=True, retried=True)
    retry = study.ask()  # the retry, running now; its worker dies too
    run_id = s["tracker"].start_trial(s["parent"], retry.number, {})
    released = release_trial(*args, held(retry, dead_pid(), run_id), "died", 1)
    assert released == Released(failed=True, retried=False)  # its one retry is used up
    assert release_trial(*args, held(retry, dead_pid(), run_id), "died", 1) == Released(
        failed=False, retried=False
    )
