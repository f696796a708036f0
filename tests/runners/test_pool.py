"""``sweep run --workers N`` end to end: real worker processes, a journal file, SQLite MLflow.

The studies share one SWEEP_HOME (the teacher and the decoded cache are built once), each
under its own name. Faults are real: a worker is SIGKILLed in the middle of a trial, the
pool gets SIGINT as from Ctrl-C. What is left is read back through Optuna and MLflow.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from cli_runs import (
    assert_one_parent_one_child_per_trial,
    finished,
    load,
    runs,
    start,
    sweep,
    wait_for_trial_with_run,
    write_space,
)
from optuna.trial import TrialState

from runners.held import all_held
from sweep.cli import main
from sweep.search.study import TARGET_ATTR


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> dict:
    """One home for the module's studies, its teacher and cache built by a first small run."""
    tmp = tmp_path_factory.mktemp("pool")
    return {"home": tmp / "home", "tmp": tmp, "data": food11_dir}


@pytest.fixture(scope="module")
def pooled(shared: dict) -> dict:
    """``sweep run --trials 5 --workers 3``, once for the module."""
    space = write_space(shared["tmp"], "exact", shared["data"], epochs=2)
    run = sweep(shared["home"], "run", "--space", str(space), "--trials", "5", "--workers", "3")
    assert run.returncode == 0, run.stderr
    return {**shared, "run": run, "space": space}


def test_three_workers_reach_exactly_the_target(pooled: dict) -> None:
    home, run = pooled["home"], pooled["run"]
    assert "5 finished trials" in run.stdout
    study = load(home, "exact")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert finished(study) == 5
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert_one_parent_one_child_per_trial(home, study)
    logs = sorted((home / "workers").glob("exact-worker*.log"))
    assert len(logs) == 3
    ran = [int(log.read_text().split("worker: ran ")[1].split()[0]) for log in logs]
    assert sum(ran) == len(states)  # every trial was run by exactly one worker
    assert run.stderr.count(" complete ") == 5  # one progress line per trial, from the parent


def test_a_joining_worker_runs_the_remaining_trials_under_the_same_parent(pooled: dict) -> None:
    home = pooled["home"]
    study = load(home, "exact")
    parent = study.user_attrs["mlflow_parent_run_id"]
    # What `sweep run --trials 7` on another host stores before its own trials start.
    study.set_user_attr(TARGET_ATTR, 7)
    journal = str(home / "optuna.journal")
    worker = sweep(home, "worker", "--study", "exact", "--storage", journal)
    assert worker.returncode == 0, worker.stderr
    assert "worker: ran 2 trials; study exact holds 7/7 finished trials" in worker.stdout
    assert worker.stderr.strip() == ""  # a worker prints nothing but errors
    study = load(home, "exact")
    assert finished(study) == 7 and study.user_attrs["mlflow_parent_run_id"] == parent
    assert_one_parent_one_child_per_trial(home, study)


def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_retried(shared: dict) -> None:
    home = shared["home"]
    space = write_space(shared["tmp"], "kill", shared["data"], epochs=6)
    args = ("run", "--space", str(space), "--trials", "4", "--workers", "2", "--no-progress")
    pool = start(home, *args)
    held = wait_for_trial_with_run(home, "kill", pool)
    os.kill(held.pid, signal.SIGKILL)
    out, err = pool.communicate(timeout=600)
    assert pool.returncode == 0, err
    assert f"trial {held.number} failed and queued again" in err
    study = load(home, "kill")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    killed = trials[held.number]
    assert killed.state == TrialState.FAIL
    assert "signal 9" in killed.system_attrs["fail_reason"]
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == held.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state == TrialState.COMPLETE
    assert finished(study) == 4
    children = assert_one_parent_one_child_per_trial(home, study)
    failed = [r for r in children if r.info.run_id == held.run_id][0]
    assert failed.info.status == "FAILED" and failed.data.tags["state"] == "failed"


def test_ctrl_c_stops_every_worker_cleanly_and_a_rerun_completes(shared: dict) -> None:
    home = shared["home"]
    space = write_space(shared["tmp"], "interrupt", shared["data"], epochs=6)
    args = ("run", "--space", str(space), "--trials", "4", "--workers", "2", "--no-progress")
    pool = start(home, *args)
    held = wait_for_trial_with_run(home, "interrupt", pool)
    pool.send_signal(signal.SIGINT)
    out, err = pool.communicate(timeout=120)
    assert pool.returncode == 130, err
    assert "re-run the same command to continue" in err
    study = load(home, "interrupt")
    assert study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) == []
    assert [t.state for t in study.trials if t.number == held.number] == [TrialState.FAIL]
    _, found = runs(home, "interrupt")
    assert not [r for r in found if r.info.status == "RUNNING"]
    parent = [r for r in found if r.data.tags.get("sweep.role") == "study"][0]
    assert parent.info.status == "KILLED"
    assert all_held(home, "interrupt") == []  # every worker is gone and forgot its trial

    again = sweep(home, *args)
    assert again.returncode == 0, again.stderr
    study = load(home, "interrupt")
    assert finished(study) == 4
    assert_one_parent_one_child_per_trial(home, study, interrupted=True)


def test_unreachable_storage_or_tracking_server_is_one_line_exit_2(
    shared: dict, sweep_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    space = write_space(shared["tmp"], "unreachable", shared["data"], epochs=1)
    url = "postgresql://u:secret@127.0.0.1:1/db"
    for argv in (
        ["run", "--space", str(space), "--trials", "2", "--workers", "2", "--storage", url],
        ["worker", "--study", "unreachable", "--storage", url],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--storage: postgresql://u:***@" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert main(["run", "--space", str(space), "--trials", "2", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MLFLOW_TRACKING_URI: http://127.0.0.1:1" in err
    assert not sweep_home.exists() or not any(sweep_home.iterdir())  # nothing half-written
