"""The MLflow parent run: one per study even when two processes create it at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.search.storage import open_storage
from sweep.track.tracker import Tracker, check_reachable


def test_two_processes_creating_the_parent_at_once_end_with_one(tmp_path: Path) -> None:
    journal = str(tmp_path / "optuna.journal")
    optuna.create_study(study_name="race", storage=open_storage(journal))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, "race")  # the experiment exists; the race is about the parent run
    start = threading.Barrier(2)
    chosen: list[str] = []

    def create() -> None:
        # Each "process" has its own storage, study and tracker, as on two hosts.
        study = optuna.load_study(study_name="race", storage=open_storage(journal))
        tracker = Tracker(uri, "race")
        start.wait()
        chosen.append(tracker.ensure_parent(study, {"trials": 10}))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker = Tracker(uri, "race")
    parents = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`sweep.role` = 'study'"
    )  # deleted runs are not listed
    assert len(parents) == 1
    assert chosen == [parents[0].info.run_id] * 2
    study = optuna.load_study(study_name="race", storage=open_storage(journal))
    assert tracker.parent_of(study) == parents[0].info.run_id


def test_a_worker_needs_the_parent_that_sweep_run_made(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="np", storage=open_storage(str(tmp_path / "j")))
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "np")
    with pytest.raises(SweepError, match="holds no parent run of study 'np'"):
        tracker.parent_of(study)
    study.set_user_attr("mlflow_parent_run_id", "0" * 32)  # from another tracking store
    with pytest.raises(SweepError, match="point every worker at the same tracking server"):
        tracker.parent_of(study)


def test_an_unreachable_tracking_server_fails_at_once() -> None:
    began = time.monotonic()
    with pytest.raises(SweepError, match="MLFLOW_TRACKING_URI: http://127.0.0.1:1: cannot use"):
        check_reachable("http://127.0.0.1:1")
    assert time.monotonic() - began < 5  # not MLflow's minutes of retries
    check_reachable("sqlite:///anything.db")  # a local store has nothing to reach


def test_four_processes_creating_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = (
        "import sys, time\n"
        "from sweep.track.tracker import Tracker\n"
        "while time.time() < float(sys.argv[1]): time.sleep(0.001)\n"  # start together
        f"Tracker({uri!r}, 'race', None)\n"
    )
    start = str(time.time() + 8)  # after every interpreter has imported mlflow
    processes = [
        subprocess.Popen([sys.executable, "-c", script, start], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
    experiments = MlflowClient(tracking_uri=uri).search_experiments()
    assert [e.name for e in experiments].count("race") == 1


def test_registering_leaves_the_processs_tracking_uri_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import torch

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "reg", (tmp_path / "a").as_uri())
    run_id = tracker.start_run("trial", {}, {})
    tracker.client.set_terminated(run_id)
    ended = tracker.client.get_run(run_id).info
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    version = tracker.register_model(
        run_id, model, "reg", input_shape=(3, 2, 2), tags={"trial": "0"}, description="d"
    )
    # Left set, the next study of this process would log into this one's store.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != tracker.tracking_uri
    assert [str(v) for v in tracker.registered_versions("reg", run_id)] == [version] == ["1"]
    # The run is not reopened: its status and times are those it ended with.
    after = tracker.client.get_run(run_id).info
    assert (after.status, after.start_time, after.end_time) == (
        ended.status,
        ended.start_time,
        ended.end_time,
    )
    assert "model" in {a.path for a in tracker.client.list_artifacts(run_id)}
    registered = tracker.client.get_model_version("reg", version)
    assert registered.tags == {"trial": "0"} and registered.description == "d"
    # A second version of the same model (a later best) goes under the same name.
    second = tracker.start_run("trial", {}, {})
    assert (
        tracker.register_model(
            second, model, "reg", input_shape=(3, 2, 2), tags={}, description=""
        )
        == "2"
    )
    assert str(tracker.client.get_model_version_by_alias("reg", "best").version) == "2"
