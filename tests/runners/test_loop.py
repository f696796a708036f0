"""The shared trial loop under real concurrency: four processes, one journal, one MLflow store.

The objective here logs to MLflow as the real one does (a child run, params, a metric per
epoch, a ``config.yaml`` artifact) but trains nothing, so the test stresses exactly the
parts that concurrency can break: the count, the storage and the tracking store.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.search.pareto import record
from sweep.search.storage import open_storage
from sweep.track.tracker import Tracker

WORKER = """
import sys, time
from pathlib import Path
import optuna
from runners.loop import TrialLoop
from sweep.search.storage import open_storage
from sweep.track.tracker import Tracker

home, target = Path(sys.argv[1]), int(sys.argv[2])
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = open_storage(str(home / "optuna.journal"))
sampler = optuna.samplers.RandomSampler(seed=int(sys.argv[3]))
study = optuna.load_study(study_name="loop", storage=storage, sampler=sampler)
tracker = Tracker(f"sqlite:///{home / 'mlflow.db'}", "loop")
parent = tracker.parent_of(study)

def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    run_id = tracker.start_trial(parent, trial.number, {f"p{i}": i for i in range(30)})
    trial.set_user_attr("mlflow_run_id", run_id)
    tracker.log_config(run_id, {"x": x})
    state = "failed"
    try:
        for epoch in range(3):
            time.sleep(0.02)
            tracker.log_metrics(run_id, {"val_acc": x, "train_loss": 1 - x}, step=epoch)
        if x < 0.1:
            raise RuntimeError("a failed trial does not count")
        if x < 0.25:
            state = "infeasible"
            trial.set_user_attr("state", state)
            raise optuna.TrialPruned()
        state = "complete"
        return x
    finally:
        tracker.finish_trial(run_id, state)

loop = TrialLoop(study, storage, tracker, parent, home, target, 1, objective)
print("ready", flush=True)
while not (home / "go").exists():  # start together, so the processes really race
    time.sleep(0.01)
print(loop.run())
"""


def test_four_processes_stop_at_exactly_the_target_and_log_every_run_once(
    tmp_path: Path,
) -> None:
    storage = open_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(study_name="loop", storage=storage, direction="maximize")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "loop")
    parent = tracker.ensure_parent(study, {"trials": 24})
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), "24", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.communicate()[1]
    (tmp_path / "go").touch()
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, [err for _, err in outputs]
    ran = [int(out.split()[-1]) for out, _ in outputs]

    trials = study.get_trials(deepcopy=False)
    assert sum(record(t).finished for t in trials) == 24  # exactly: no overshoot
    assert sum(ran) == len(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(1 for r in ran if r > 0) >= 2, "the processes took turns"

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("loop")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = [r for r in runs if r.info.run_id != parent]
    numbers = Counter(int(r.data.tags["optuna.trial"]) for r in children)
    assert numbers == Counter(t.number for t in trials)  # every trial's run, each once
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in children)
    assert not [r for r in children if r.info.status == "RUNNING"]
    for run in children:
        assert len(run.data.params) == 30
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0, 1, 2]
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]


def test_a_trial_out_of_gpu_memory_fails_alone_and_the_worker_goes_on(tmp_path: Path) -> None:
    import torch

    from runners.loop import TrialLoop

    storage = open_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(study_name="oom", storage=storage, direction="maximize")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "oom")
    parent = tracker.ensure_parent(study, {})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 0:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (raised by the test)")
        return x

    loop = TrialLoop(study, storage, tracker, parent, tmp_path, 2, 1, objective)
    assert loop.run() == 3
    assert [t.state for t in study.trials] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert not list((tmp_path / "workers").glob("*.json"))  # nothing left held
