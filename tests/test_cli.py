"""End to end: the real ``sweep`` CLI on generated images, read back through MLflow and Optuna.

One sweep (3 trials x 1 epoch, a teacher trained for 1 epoch) runs once for the module; the
tests then read what a user would open: MLflow runs, metrics, artifacts and the registry,
the Optuna study, ``sweep status``, ``sweep export`` and ``sweep predict``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
import yaml
from cli_runs import cli_env, free_port, wait_until_serving
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER
from sweep.models.budget import count_params
from sweep.models.registry import create_student

SPACE = {
    "study": "e2e",
    "dataset": TINY_DATASET,
    "teacher": TINY_TEACHER,
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
    "early_stopping": "none",
    "fixed": {**TINY_FIXED, "lr": 0.01},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv"]},
        "student.widths.0": {"type": "int", "low": 8, "high": 16, "step": 8},
        "kd.alpha": {"type": "float", "low": 0.3, "high": 0.7},
    },
}


def sweep_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``sweep`` entry point as a user would, in a fresh process."""
    env = {**os.environ, "SWEEP_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "sweep.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = sweep_cli(tmp_path / "home", "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"sweep {version('sweep')}\n", "")
    assert not (tmp_path / "home").exists()


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> dict:
    """Run ``sweep run`` once: 3 trials x 1 epoch on the generated food-11 folder."""
    tmp = tmp_path_factory.mktemp("e2e")
    space = tmp / "e2e.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    home = tmp / "home"
    run = sweep_cli(
        home, "run", "--space", str(space), "--trials", "3", "--data-dir", str(food11_dir)
    )
    assert run.returncode == 0, run.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    return {
        "home": home,
        "space": space,
        "run": run,
        "client": client,
        "experiment": experiment,
        "data": food11_dir,
        "tmp": tmp,
    }


def _runs(client: MlflowClient, experiment_id: str, where: str) -> list:
    return client.search_runs([experiment_id], filter_string=where, max_results=1000)


def test_mlflow_holds_one_parent_and_a_child_per_trial(swept: dict) -> None:
    client, experiment = swept["client"], swept["experiment"]
    parents = _runs(client, experiment.experiment_id, "tags.`sweep.role` = 'study'")
    assert len(parents) == 1
    parent = parents[0]
    children = _runs(
        client, experiment.experiment_id, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 3
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["state"] == "complete"
        assert child.data.params["student.family"] == "dsconv"
        assert "kd.alpha" in child.data.params and "train.epochs" in child.data.params
        for metric in ("best_val_acc", "params", "macs", "train_seconds", "best_epoch"):
            assert metric in child.data.metrics, metric
            steps = [m.step for m in client.get_metric_history(child.info.run_id, metric)]
            assert steps == [0], (metric, steps)  # a one-off fact: one value
        assert 0.0 <= child.data.metrics["best_val_acc"] <= 1.0
        curve = client.get_metric_history(child.info.run_id, "val_acc")
        assert [m.step for m in curve] == [0]  # one point an epoch, nothing after the last
        assert child.data.metrics["best_val_acc"] == max(m.value for m in curve)
        assert child.data.metrics["params"] <= 60_000
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert [m.step for m in history] == [0]
        for metric in ("kd_loss", "temperature", "lr"):
            assert client.get_metric_history(child.info.run_id, metric), metric
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "model_summary.txt", "checkpoint"} <= names
        numbers = child.data.tags["optuna.trial"]
        assert child.info.run_name == f"trial-{int(numbers):04d}"


def test_parent_holds_the_front_and_children_carry_pareto_tags(swept: dict) -> None:
    client, experiment = swept["client"], swept["experiment"]
    parent = _runs(client, experiment.experiment_id, "tags.`sweep.role` = 'study'")[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png"} <= artifacts
    local = client.download_artifacts(parent.info.run_id, "pareto.csv", str(swept["tmp"]))
    with open(local) as handle:
        front = list(csv.DictReader(handle))
    assert front, "a study with complete trials has a front"
    params = [int(row["params"]) for row in front]
    accs = [float(row["val_acc"]) for row in front]
    assert params == sorted(params) and accs == sorted(accs)  # more params must buy accuracy
    tagged = _runs(client, experiment.experiment_id, "tags.pareto = 'true'")
    assert sorted(r.data.tags["optuna.trial"] for r in tagged) == sorted(
        row["trial"] for row in front
    )
    # Every complete child says whether it is on the front, so both filters work.
    complete = _runs(client, experiment.experiment_id, "tags.state = 'complete'")
    off = _runs(client, experiment.experiment_id, "tags.pareto = 'false'")
    assert len(tagged) + len(off) == len(complete)
    assert {r.data.tags["pareto"] for r in complete} <= {"true", "false"}


def test_optuna_study_matches_mlflow(swept: dict) -> None:
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    study = optuna.load_study(study_name="e2e", storage=storage)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 3
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    for trial in complete:
        run = swept["client"].get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.metrics["best_val_acc"] == pytest.approx(trial.value)
        assert trial.constraints["params_over_budget"] <= 0
        # The run's page opens on what it trained and how well, as a person reads it.
        note = run.data.tags["mlflow.note.content"]
        assert note.startswith(f"**dsconv**, {trial.user_attrs['params']:,} parameters (")
        assert f"Best **val_acc {trial.value:.4f}** at epoch " in note


def test_best_model_is_registered_without_reopening_its_run(swept: dict) -> None:
    client = swept["client"]
    version = client.get_model_version_by_alias("e2e", "best")
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    study = optuna.load_study(study_name="e2e", storage=storage)
    best = study.best_trial
    assert version.run_id == best.user_attrs["mlflow_run_id"]
    assert version.tags == {
        "val_acc": f"{best.value:.4f}",
        "params": str(best.user_attrs["params"]),
        "macs": str(best.user_attrs["macs"]),
        "family": "dsconv",
        "study": "e2e",
        "trial": str(best.number),
        "stage": "search",
    }
    assert f"Trial {best.number} of study 'e2e'" in version.description
    # The run keeps the times of its training: it ended before its parent did.
    run = client.get_run(version.run_id)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert run.info.status == "FINISHED" and run.info.end_time <= parent.info.end_time
    assert run.info.end_time <= version.creation_timestamp  # registered after, not reopened
    model = mlflow.pytorch.load_model(version.source)
    local = version.source.removeprefix("file://")
    signature = mlflow.models.get_model_info(local).signature
    size = TINY_DATASET["image_size"]
    assert list(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 3, size, size]
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_parent_run_carries_the_studys_headline(swept: dict) -> None:
    client, experiment = swept["client"], swept["experiment"]
    parent = _runs(client, experiment.experiment_id, "tags.`sweep.role` = 'study'")[0]
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    study = optuna.load_study(study_name="e2e", storage=storage)
    best = study.best_trial
    metrics = parent.data.metrics
    assert metrics["best_val_acc"] == pytest.approx(best.value)
    assert metrics["params"] == best.user_attrs["params"]
    states = [t.user_attrs.get("state") for t in study.trials]
    assert metrics["trials_complete"] == len(study.get_trials(states=[TrialState.COMPLETE]))
    assert metrics["trials_infeasible"] == states.count("infeasible")
    note = parent.data.tags["mlflow.note.content"]
    assert f"best feasible **val_acc {best.value:.4f}**" in note
    run = best.user_attrs["mlflow_run_id"]
    link = f"(#/experiments/{experiment.experiment_id}/runs/{run}?workflowType=machine_learning)"
    assert link in note and "| trial | val_acc | params | MACs | family |" in note
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.sweep"])
    assert view["orderByKey"] == "metrics.`best_val_acc`"
    # The view's filter, as MLflow's own search reads it: the search trials, not the parent.
    shown = client.search_runs([experiment.experiment_id], view["searchFilter"])
    assert sorted(r.info.run_id for r in shown) == sorted(
        t.user_attrs["mlflow_run_id"] for t in study.trials
    )
    [scatter] = view["compareRunCharts"]
    assert (scatter["type"], scatter["xaxis"]["key"], scatter["yaxis"]["key"]) == (
        "SCATTER",
        "params",
        "best_val_acc",
    )
    front = json.loads(experiment.tags["mlflow.sharedViewState.sweep-front"])
    on_front = client.search_runs([experiment.experiment_id], front["searchFilter"])
    assert {r.data.tags["optuna.trial"] for r in on_front} == {
        str(n) for n in study.user_attrs["pareto_trials"]
    }


def test_status_prints_states_best_and_front(swept: dict) -> None:
    status = sweep_cli(swept["home"], "status", "--study", "e2e")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "complete" in out and "infeasible" in out and "early-stopped" in out
    assert "best feasible trial" in out and "Pareto front" in out
    # Piped (not a terminal): whole run ids, never cut to fit 80 columns.
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert study.best_trial.user_attrs["mlflow_run_id"] in out
    assert "…" not in out


def test_export_writes_a_reloadable_student(swept: dict) -> None:
    out = swept["tmp"] / "best"
    export = sweep_cli(swept["home"], "export", "--study", "e2e", "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert {p.name for p in out.iterdir()} == {
        "student_best.ckpt",
        "student.py",
        "summary.txt",
        "student_config.yaml",
        "export.json",
    }
    config = yaml.safe_load((out / "student_config.yaml").read_text())
    model = create_student(config["family"], config["num_classes"], config["options"])
    model.load_state_dict(torch.load(out / "student_best.ckpt", weights_only=True))
    report = json.loads((out / "export.json").read_text())
    assert count_params(model) == report["params"] <= 60_000
    assert abs(report["reloaded_val_acc"] - report["logged_val_acc"]) <= 1 / 24 + 1e-9
    summary = (out / "summary.txt").read_text()
    assert f"Total params: {report['params']:,}\n" in summary
    margin = 60_000 - report["params"]
    assert f"Margin: {margin:,} under the budget ({margin / 60_000:.1%})" in summary
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".best-")]
    assert len({p.stat().st_mode & 0o777 for p in out.iterdir()}) == 1  # the checkpoint too
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    best = optuna.load_study(study_name="e2e", storage=storage).best_trial
    assert (report["source_trial"], report["run_id"]) == (
        best.number,
        best.user_attrs["mlflow_run_id"],
    )


# Runs the exported student.py where sweep cannot be imported (a clean, isolated interpreter
# with sweep blocked), counts with torchsummary there and prints logits for fixed images.
STANDALONE_CHECK = """
import contextlib, io, json, re, runpy, sys
sys.modules["sweep"] = None  # any `import sweep` now fails
sys.path.insert(0, ".")
import student
import torchsummary, torch
model = student.load_student()
text = io.StringIO()
with contextlib.redirect_stdout(text):
    torchsummary.summary(model, (3, student.IMAGE_SIZE, student.IMAGE_SIZE), device="cpu")
total = int(re.search(r"Total params: ([\\d,]+)", text.getvalue())[1].replace(",", ""))
torch.manual_seed(0)
images = torch.rand(2, 3, student.IMAGE_SIZE, student.IMAGE_SIZE)
with torch.no_grad():
    logits = model(images).tolist()
main = io.StringIO()
with contextlib.redirect_stdout(main):
    runpy.run_path("student.py", run_name="__main__")
loaded = sorted(m for m in sys.modules if m == "sweep" or m.startswith("sweep."))
print(json.dumps({"total": total, "logits": logits, "main": main.getvalue(), "sweep": loaded}))
"""


def test_exported_student_py_runs_with_torch_alone(swept: dict) -> None:
    out = swept["tmp"] / "standalone"
    export = sweep_cli(swept["home"], "export", "--study", "e2e", "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert "import sweep" not in (out / "student.py").read_text()
    ran = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE_CHECK],
        cwd=out,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    report = json.loads((out / "export.json").read_text())
    assert result["total"] == report["params"]
    assert f"parameters: {report['params']:,}" in result["main"]
    assert result["sweep"] == ["sweep"]  # only the blocker: nothing of sweep was imported
    config = yaml.safe_load((out / "student_config.yaml").read_text())
    model = create_student(config["family"], config["num_classes"], config["options"]).eval()
    model.load_state_dict(torch.load(out / "student_best.ckpt", weights_only=True))
    torch.manual_seed(0)
    images = torch.rand(2, 3, config["image_size"], config["image_size"])
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(torch.tensor(result["logits"]), expected, rtol=1e-4, atol=1e-5)


def test_export_refuses_a_folder_with_files_unless_forced(swept: dict) -> None:
    out = swept["tmp"] / "taken"
    out.mkdir()
    (out / "student_int8.pt2").write_bytes(b"an earlier study's program")
    refused = sweep_cli(swept["home"], "export", "--study", "e2e", "--out", str(out))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"sweep: error: --out: {out}: is not empty (student_int8.pt2); "
        "pass --force to replace it whole"
    )
    assert [p.name for p in out.iterdir()] == ["student_int8.pt2"]  # untouched
    forced = sweep_cli(swept["home"], "export", "--study", "e2e", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    names = {p.name for p in out.iterdir()}
    assert "student_int8.pt2" not in names and "student_best.ckpt" in names
    assert [p.name for p in swept["tmp"].iterdir() if p.name.startswith(".taken")] == []


def test_predict_writes_the_submission_format(swept: dict) -> None:
    out = swept["tmp"] / "predict.csv"
    predict = sweep_cli(
        swept["home"],
        "predict",
        "--study",
        "e2e",
        "--data-dir",
        str(swept["data"]),
        "--out",
        str(out),
    )
    assert predict.returncode == 0, predict.stderr
    with open(out) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Id", "Category"]
    assert [r[0] for r in rows[1:]] == [f"{i:04d}" for i in range(6)]
    assert all(r[1] in {"0", "1", "2"} for r in rows[1:])
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    best = optuna.load_study(study_name="e2e", storage=storage).best_trial
    took, wrote = predict.stdout.splitlines()
    assert took.startswith(f"took trial {best.number} (search stage")
    evaluation = swept["data"] / "evaluation"
    assert wrote == f"wrote 6 predictions of the images in {evaluation} to {out}"
    # The folder of images itself, with nothing else of the data set beside it: the model
    # carries its class names.
    alone = swept["tmp"] / "to-label"
    alone.mkdir()
    for image in evaluation.iterdir():
        (alone / image.name).write_bytes(image.read_bytes())
    again = sweep_cli(
        swept["home"], "predict", "--study", "e2e", "--data-dir", str(alone), "--out", str(out)
    )
    assert again.returncode == 0, again.stderr
    with open(out) as handle:
        assert list(csv.reader(handle)) == rows
    config = swept["client"].download_artifacts(best.user_attrs["mlflow_run_id"], "config.yaml")
    assert yaml.safe_load(Path(config).read_text())["class_names"] == ["0", "1", "2"]


def test_rerun_resumes_without_a_second_parent(swept: dict) -> None:
    again = sweep_cli(
        swept["home"],
        "run",
        "--space",
        str(swept["space"]),
        "--trials",
        "4",
        "--data-dir",
        str(swept["data"]),
        "--no-progress",
    )
    assert again.returncode == 0, again.stderr
    assert "4 finished trials" in again.stdout
    assert "teacher epoch" not in again.stderr  # the trained teacher is reused
    client, experiment = swept["client"], swept["experiment"]
    parents = _runs(client, experiment.experiment_id, "tags.`sweep.role` = 'study'")
    assert len(parents) == 1
    children = _runs(
        client, experiment.experiment_id, f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert len(children) == 4
    assert not _runs(client, experiment.experiment_id, "attributes.status = 'RUNNING'")


def test_teacher_cache_writes_the_asked_views(swept: dict) -> None:
    home = swept["home"]
    before = set((home / "cache").glob("soft-labels-*.npy"))
    done = sweep_cli(
        home, "teacher", "cache", "--space", str(swept["space"]), "--views", "2",
        "--data-dir", str(swept["data"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [written] = set((home / "cache").glob("soft-labels-*.npy")) - before
    assert f"2 views of 48 images in {written}" in done.stdout
    refused = sweep_cli(home, "teacher", "cache", "--space", str(swept["space"]), "--views", "0")
    assert (
        refused.returncode == 2
        and refused.stderr.strip() == "sweep: error: --views: must be at least 1"
    )


def test_dashboard_names_the_objective_and_shows_the_constraint_and_the_front(
    swept: dict,
) -> None:
    """optuna-dashboard, as ``sweep dashboard`` serves it, read through its own API."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweep.cli", "dashboard", "--port", str(port)],
        env=cli_env(swept["home"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/studies"
    try:
        wait_until_serving(server, base, 60)
        with urllib.request.urlopen(base, timeout=30) as response:
            studies = json.loads(response.read())["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "e2e")
        with urllib.request.urlopen(f"{base}/{study_id}", timeout=30) as response:
            detail = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert detail["objective_names"] == ["val_acc"]
    trials = {t["number"]: t for t in detail["trials"]}
    storage = JournalStorage(JournalFileBackend(str(swept["home"] / "optuna.journal")))
    for trial in optuna.load_study(study_name="e2e", storage=storage).trials:
        shown = trials[trial.number]
        excess = trial.constraints["params_over_budget"]
        assert shown["constraints"] == [excess]
        assert {"key": "params", "value": str(trial.user_attrs["params"])} in shown["user_attrs"]
        # By how much a proposal was over, in the trial table (the constraint is API-only);
        # tests/search/test_objective.py makes over-budget proposals.
        shown_over = [a["value"] for a in shown["user_attrs"] if a["key"] == "params_over_budget"]
        assert shown_over == ([str(int(excess))] if excess > 0 else [])
    assert {"key": "params", "sortable": True} in detail["union_user_attrs"]  # a plot target
    assert [a["filename"] for a in detail["artifacts"]][-1:] == ["pareto.png"]
