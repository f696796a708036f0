"""``sweep doctor``: what a crash left in a study is found, then mended with --repair."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners.doctor import check_study
from runners.held import HeldTrial, this_host, write_held
from sweep.cli import main
from sweep.search.storage import open_storage
from sweep.track.tracker import Tracker


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def crashed(sweep_home: Path) -> dict:
    """A journal study as a power cut leaves it: a dead worker's trial RUNNING, a finished
    trial's run RUNNING, the parent RUNNING."""
    storage = open_storage(str(sweep_home / "optuna.journal"))
    study = optuna.create_study(study_name="crash", storage=storage, direction="maximize")
    study.set_user_attr("max_retries", 1)
    tracker = Tracker(f"sqlite:///{sweep_home / 'mlflow.db'}", "crash")
    parent = tracker.ensure_parent(study, {})
    tracker.set_status(parent, "RUNNING")
    done = study.ask()
    done.suggest_float("lr", 1e-3, 1e-1)
    stale_run = tracker.start_trial(parent, done.number, done.params)
    study.tell(done, 0.5)  # finished, but its run was never ended
    dying = study.ask()
    dying.suggest_float("lr", 1e-3, 1e-1)
    dying_run = tracker.start_trial(parent, dying.number, dying.params)
    held = HeldTrial(dead_pid(), this_host(), "crash", dying._trial_id, dying.number, dying_run)
    write_held(sweep_home, held)
    return {"study": study, "tracker": tracker, "parent": parent, "runs": (stale_run, dying_run)}


def test_doctor_reports_then_repairs(crashed: dict, capsys: pytest.CaptureFixture[str]) -> None:
    stale_run, dying_run = crashed["runs"]
    assert main(["doctor", "--study", "crash"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "found: trial 1 RUNNING with no live worker",
        f"found: trial 0's MLflow run {stale_run} RUNNING with no live trial",
        f"found: trial 1's MLflow run {dying_run} RUNNING with no live trial",
        "found: the parent run RUNNING with nothing running",
        "run `sweep doctor --study crash --repair` to mend it",
    ]
    client = crashed["tracker"].client
    assert client.get_run(crashed["parent"]).info.status == "RUNNING"  # report only

    assert main(["doctor", "--study", "crash", "--repair"]) == 0
    # Every mend is reported, the dead trial's run included, each by its trial's number.
    assert capsys.readouterr().out.splitlines() == [
        "mended: trial 1 RUNNING with no live worker (failed, and queued again while it has "
        "retries left)",
        f"mended: trial 0's MLflow run {stale_run} RUNNING with no live trial (ended FAILED)",
        f"mended: trial 1's MLflow run {dying_run} RUNNING with no live trial (ended FAILED)",
        "mended: the parent run RUNNING with nothing running (ended KILLED)",
    ]
    study = optuna.load_study(
        study_name="crash", storage=open_storage(os.environ["SWEEP_HOME"] + "/optuna.journal")
    )
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]  # queued again
    assert study.trials[2].user_attrs["retry_of"] == 1
    assert {client.get_run(r).info.status for r in crashed["runs"]} == {"FAILED"}
    assert client.get_run(crashed["parent"]).info.status == "KILLED"
    assert check_study("crash").healthy
