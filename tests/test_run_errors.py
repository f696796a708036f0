"""Bad input and stop conditions of ``sweep run``: one line naming file and key, exit 2,
nothing written; infeasible proposals recorded and never trained."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER
from sweep.cli import main

SMALL = {
    "study": "errs",
    "dataset": TINY_DATASET,
    "teacher": TINY_TEACHER,
    "sampler": {"name": "random", "seed": 3},
    "early_stopping": "none",
    "fixed": {**TINY_FIXED, "kd.alpha": 0.0},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv"]},
        "student.widths.2": {"type": "int", "low": 8, "high": 4096},
    },
}


def _space(tmp_path: Path, food11_dir: Path, **changes: object) -> Path:
    document = yaml.safe_load(yaml.safe_dump(SMALL))
    document["dataset"]["root"] = str(food11_dir)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            document[section][name] = value
        else:
            document[section] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _nothing_written(home: Path) -> bool:
    """The home folder as the test found it: absent, or empty (not even the demo data)."""
    return not home.exists() or not any(home.iterdir())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "space.yaml: colour: unknown key"),
        ({"fixed__epochs": "ten"}, "space.yaml: fixed.epochs: must be an integer"),
        ({"fixed__student.widths": "wide"}, "student.widths.2: 'widths' holds a single value"),
        (
            {"params__lr": {"type": "float", "low": 1.0, "high": 0.1}},
            "space.yaml: params.lr: `low <= high` must hold, but got (low=1.0, high=0.1).",
        ),
        (
            {"teacher__checkpoint": "/nowhere/teacher.ckpt"},
            "space.yaml: teacher.checkpoint: /nowhere/teacher.ckpt: no such file",
        ),
        ({"dataset__root": "/nowhere/food11"}, "/nowhere/food11"),
        (
            {"budget": {"max_params": 100}},
            "space.yaml: budget.max_params: no model in this space fits 100 parameters",
        ),
        ({"fixed__student.depth": 2}, "space.yaml: student.depth: unknown option"),
        ({"fixed__epochs": 0}, "space.yaml: fixed.epochs: must be >= 1, got 0"),
        ({"fixed__batch_size": 0}, "space.yaml: fixed.batch_size: must be >= 1, got 0"),
        ({"fixed__kd.views": 0}, "space.yaml: fixed.kd.views: must be >= 1, got 0"),
        ({"dataset__resize": 8}, "space.yaml: dataset.resize: 8 is smaller than"),
        (
            {"params__student.family": {"type": "categorical", "choices": ["resnet"]}},
            "student.family: unknown family 'resnet'",
        ),
        (
            {"fixed__dataset.cache": False, "fixed__kd.alpha": 0.5},
            "space.yaml: kd.teacher_mode: cached soft labels replay the decoded cache",
        ),
        # A searched range is checked at both ends, not only at its low one.
        (
            {"params__kd.alpha": {"type": "float", "low": 0.1, "high": 1.5}},
            "space.yaml: params.kd.alpha: must be <= 1, got 1.5",
        ),
        (
            {"params__student.family": {"type": "categorical", "choices": ["dsconv", "vit"]}},
            "student.family: unknown family 'vit'",
        ),
        ({"study": "a" * 300}, "space.yaml: study: must be at most 100 characters, got 300"),
        ({"study": "a/b"}, "space.yaml: study: must be a name of letters, digits"),
    ],
)
def test_bad_space_is_one_line_exit_2_nothing_written(
    tmp_path: Path,
    food11_dir: Path,
    sweep_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict,
    expected: str,
) -> None:
    path = _space(tmp_path, food11_dir, **changes)
    here = _empty_folder(tmp_path, monkeypatch)
    code = main(["run", "--space", str(path), "--trials", "2", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sweep: error: ")
    assert expected in err
    assert _nothing_written(sweep_home) and _nothing_written(here)


def _empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder, to see that a refusal leaves the current folder alone too."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_an_empty_space_file_says_so(
    tmp_path: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert main(["run", "--space", str(path), "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sweep: error: {path}: the file is empty; `sweep spaces` lists complete spaces"
    assert _nothing_written(sweep_home)


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("redis://127.0.0.1/0", "--storage: redis://127.0.0.1/0: unknown scheme 'redis'"),
        ("postgresql://me:secret@127.0.0.1:1/none", "--storage: postgresql://me:***@"),
    ],
)
def test_bad_storage_url(
    tmp_path: Path,
    food11_dir: Path,
    sweep_home: Path,
    capsys: pytest.CaptureFixture[str],
    storage: str,
    expected: str,
) -> None:
    path = _space(tmp_path, food11_dir)
    code = main(["run", "--space", str(path), "--trials", "1", "--storage", storage])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "secret" not in err
    assert len(err.splitlines()) == 1
    assert _nothing_written(sweep_home)


def test_bad_override_and_trials(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _space(tmp_path, food11_dir)
    assert main(["run", "--space", str(path), "--trials", "1", "--set", "fixed.lr=fast"]) == 2
    assert "fixed.lr: must be a number" in capsys.readouterr().err
    assert main(["run", "--space", str(path), "--trials", "0"]) == 2
    assert "--trials: must be at least 1" in capsys.readouterr().err
    assert main(["status", "--study", "nope"]) == 2
    assert "--study: no study named 'nope'" in capsys.readouterr().err
    assert main(["export", "--study", "nope", "--out", str(tmp_path / "out")]) == 2
    assert "--study: no study named 'nope'" in capsys.readouterr().err
    for command in (["doctor"], ["doctor", "--repair"], ["worker"]):
        assert main([*command, "--study", "nope"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--study: no study named 'nope'" in err, err
    assert _nothing_written(sweep_home) and not (tmp_path / "out").exists()


def test_infeasible_proposals_are_recorded_never_trained_and_not_counted(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # widths.2 up to 4096: most random proposals are far over 60k parameters.
    path = _space(tmp_path, food11_dir)
    assert main(["run", "--space", str(path), "--trials", "2", "--no-progress"]) == 0
    storage = JournalStorage(JournalFileBackend(str(sweep_home / "optuna.journal")))
    study = optuna.load_study(study_name="errs", storage=storage)
    over = [t for t in study.trials if t.user_attrs.get("state") == "infeasible"]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 2
    assert over, "the seeded sampler proposes over-budget models in this space"
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_home / 'mlflow.db'}")
    for trial in over:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.user_attrs["params"] > 60_000
        assert trial.constraints["params_over_budget"] == trial.user_attrs["params"] - 60_000
        assert not trial.intermediate_values  # never trained
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["state"] == "infeasible"
        assert "best_val_acc" not in run.data.metrics and "val_acc" not in run.data.metrics
        assert "train_loss" not in run.data.metrics
        assert run.data.metrics["params"] == trial.user_attrs["params"]


def test_a_space_proposing_only_infeasible_models_stops_with_a_message(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the 8-wide corner fits; the sampler nearly always proposes far wider models.
    path = _space(
        tmp_path,
        food11_dir,
        max_infeasible_streak=3,
        params={"student.widths.2": {"type": "int", "low": 8, "high": 100_000}},
        budget={"max_params": 13_000},
    )
    code = main(["run", "--space", str(path), "--trials", "5", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "params: the last 3 proposals were all over the parameter budget" in err
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("errs")
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert not running


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_bad_teacher_files_and_unreadable_images_write_nothing(
    tmp_path: Path, food11_dir: Path, sweep_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from torchvision.models import resnet18

    whole = tmp_path / "teacher.ckpt"
    torch.save(resnet18(num_classes=3).state_dict(), whole)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(whole.read_bytes()[:200_000])
    other = tmp_path / "other.ckpt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), other)
    code = tmp_path / "code.ckpt"
    torch.save({"fc.weight": torch.ones(1), "x": _RunsCode()}, code)
    raw = tmp_path / "raw.pkl"  # pickle.dump's own format, not torch.save's
    raw.write_bytes(pickle.dumps({"fc.weight": _RunsCode()}, protocol=4))
    broken = tmp_path / "broken"
    bad_validation = tmp_path / "bad_validation"  # training reads fine
    for split in ("training", "validation"):
        for image in (food11_dir / split).iterdir():
            (broken / split).mkdir(parents=True, exist_ok=True)
            (broken / split / image.name).write_bytes(b"not a jpeg")
            (bad_validation / split).mkdir(parents=True, exist_ok=True)
            good = split == "training"
            (bad_validation / split / image.name).write_bytes(image.read_bytes() if good else b"")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = [
        ({"teacher__checkpoint": str(truncated)}, "teacher.checkpoint: "),
        ({"teacher__checkpoint": str(other)}, "not a ResNet18 state dict"),
        ({"teacher__checkpoint": str(code)}, "it holds code"),
        ({"teacher__checkpoint": str(raw)}, "a plain pickle, not a torch.save checkpoint"),
        ({"teacher__checkpoint": str(tmp_path)}, f"{tmp_path}: is a folder, not a file"),
        ({"dataset__root": str(broken)}, f"{broken / 'training'}: none of the first"),
        (
            {"dataset__root": str(bad_validation)},
            f"{bad_validation / 'validation'}: none of the first",
        ),
        ({"dataset__root": str(a_file)}, f"{a_file}: is a file, not a data folder"),
    ]
    for changes, expected in cases:
        path = _space(tmp_path, food11_dir, **changes)
        assert main(["run", "--space", str(path), "--trials", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
        assert err.startswith(f"sweep: error: {path}: ")
        assert _nothing_written(sweep_home)


def test_an_unreachable_store_writes_no_demo_data(
    tmp_path: Path,
    food11_dir: Path,
    sweep_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    demo = {**TINY_DATASET, "name": "demo", "root": None, "image_size": 16, "resize": 16}
    path = _space(tmp_path, food11_dir, dataset=demo)
    url = "postgresql://me:secret@127.0.0.1:1/none"
    assert main(["run", "--space", str(path), "--trials", "1", "--storage", url]) == 2
    assert "--storage: postgresql://me:***@" in capsys.readouterr().err
    assert _nothing_written(sweep_home)  # not the 1,800 demo images either
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert main(["run", "--space", str(path), "--trials", "1"]) == 2
    assert "MLFLOW_TRACKING_URI: http://127.0.0.1:1: cannot use it" in capsys.readouterr().err
    assert _nothing_written(sweep_home)
