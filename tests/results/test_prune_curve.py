"""One-shot pruning curves: the points, the checkpoint loading, the files, MLflow and the CLI."""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from test_cli import sweep_cli
from torch import nn

from conftest import TINY_DATASET, TINY_FIXED, TINY_TEACHER
from sweep.cli import main
from sweep.config import build_config, to_dict
from sweep.errors import CheckpointError, ConfigError, SweepError
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.models.weights import save_state_dict
from sweep.paths import artifact_location, tracking_uri
from sweep.results.prune_curve import (
    CSV_NAME,
    EXPERIMENT,
    KINDS,
    PNG_NAME,
    CurvePoint,
    Timing,
    parse_rates,
    prune_curve,
    publish_curve,
)
from sweep.teacher.checkpoints import load_checkpoint_model
from sweep.teacher.network import build_teacher
from sweep.track.tracker import Tracker
from sweep.train import evaluate

CLASSES, SIZE = 11, 32
CPU = torch.device("cpu")
FAST = Timing(CPU, batch=1, repeats=3, warmup=1)  # values are checked, not speeds
STUDENT = {"student.family": "dsconv", "student.stem": 8, "student.widths": [16, 32, 64]}


pytestmark = pytest.mark.usefixtures("one_thread")


def student(num_classes: int = CLASSES) -> nn.Module:
    torch.manual_seed(0)
    cfg = build_config(STUDENT)
    return create_student(cfg.student.family, num_classes, cfg.student.options).eval()


def teacher(num_classes: int = CLASSES) -> nn.Module:
    torch.manual_seed(0)
    return build_teacher(num_classes).eval()


def own_predictions(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two batches labelled with the model's own predictions: the unpruned accuracy is 1."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(2):
        images = torch.randn(12, 3, SIZE, SIZE, generator=generator)
        with torch.no_grad():
            batches.append((images, model(images).argmax(dim=1)))
    return batches


def prunable(model: nn.Module) -> int:
    # Conv and linear weights but the classifier's (last), which pruning leaves whole.
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(m.weight.numel() for m in layers[:-1])


@pytest.mark.parametrize(
    ("build", "rates"),
    [(student, (0.0, 0.25, 0.5, 0.75)), (teacher, (0.0, 0.3, 0.6))],
    ids=["dsconv", "resnet18"],
)
def test_curve_starts_at_the_model_and_shrinks_each_way(build, rates) -> None:
    model = build()
    before = copy.deepcopy(model.state_dict())
    val = own_predictions(model)
    assert evaluate(model, val, CPU)[0] == 1.0
    dense, nonzero = count_params(model), count_params(model, "nonzero")

    points = prune_curve(model, val, rates, image_size=SIZE, device=CPU, timing=FAST)

    assert [(p.rate, p.kind) for p in points] == [(r, k) for r in rates for k in KINDS]
    structured = [p for p in points if p.kind == "structured"]
    unstructured = [p for p in points if p.kind == "unstructured"]
    for p in (structured[0], unstructured[0]):
        assert (p.val_acc, p.params_dense, p.params_nonzero) == (1.0, dense, nonzero)
    # Channels go: the dense count falls at every rate, faster than (1 - rate) since a conv
    # loses both input and output channels.
    dense_counts = [p.params_dense for p in structured]
    assert all(a > b for a, b in zip(dense_counts, dense_counts[1:], strict=False))
    assert dense_counts[-1] < dense * (1 - rates[-1])
    # Weights are zeroed in place: dense stays, nonzero falls by round(rate * conv/linear weights).
    assert [p.params_dense for p in unstructured] == [dense] * len(rates)
    n = prunable(model)
    assert [p.params_nonzero for p in unstructured] == [nonzero - round(r * n) for r in rates]
    assert structured[-1].val_acc < 1.0  # one-shot pruning at the top rate costs accuracy
    assert all(p.latency_ms > 0 for p in points)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)


def test_taylor_needs_a_batch_and_uses_one() -> None:
    model = student()
    val = own_predictions(model)
    with pytest.raises(SweepError, match="--importance: taylor needs a training batch"):
        prune_curve(model, val, (0.5,), image_size=SIZE, device=CPU, importance="taylor")
    with pytest.raises(SweepError, match="--importance: 'l3'; known: magnitude"):
        prune_curve(model, val, (0.5,), image_size=SIZE, device=CPU, importance="l3")
    points = prune_curve(
        model,
        val,
        (0.0, 0.5),
        image_size=SIZE,
        device=CPU,
        importance="taylor",
        taylor_batch=val[0],
        timing=FAST,
    )
    magnitude = prune_curve(model, val, (0.5,), image_size=SIZE, device=CPU, timing=FAST)
    # Channel counts follow from the ratio alone; which channels go follows from the criterion.
    assert points[2].params_dense == magnitude[0].params_dense < points[0].params_dense
    assert points[0].val_acc == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5, 0,0.25", (0.0, 0.25, 0.5)),
        ("0.9", (0.9,)),
        ("", "--rates: '' is not a number"),
        ("0,,0.5", "--rates: '' is not a number"),
        ("0,half", "--rates: 'half' is not a number"),
        ("0,1", "--rates: 1 is outside [0, 1)"),
        ("-0.1", "--rates: -0.1 is outside [0, 1)"),
        ("nan", "--rates: nan is outside [0, 1)"),
        ("0.5,0.50", "--rates: 0.50 is given twice"),
    ],
)
def test_parse_rates(text: str, expected: tuple | str) -> None:
    if isinstance(expected, tuple):
        assert parse_rates(text) == expected
    else:
        with pytest.raises(SweepError) as info:
            parse_rates(text)
        assert str(info.value).startswith(expected)


def trial_config_yaml(num_classes: int = CLASSES, **student: object) -> str:
    """A trial's ``config.yaml``: the resolved config plus the class count."""
    cfg = build_config({**STUDENT, **student})
    return yaml.safe_dump({**to_dict(cfg), "num_classes": num_classes})


def export_config_yaml(num_classes: int = CLASSES) -> str:
    """``sweep export``'s ``student_config.yaml``."""
    cfg = build_config(STUDENT)
    document = {
        "family": cfg.student.family,
        "options": cfg.student.options,
        "num_classes": num_classes,
        "image_size": SIZE,
        "trial_config": to_dict(cfg),
    }
    return yaml.safe_dump(document)


def _same(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_loads_a_teacher_by_its_keys_and_students_by_their_config(tmp_path: Path) -> None:
    resnet = teacher().state_dict()
    model, name = load_checkpoint_model(save_state_dict(resnet, tmp_path / "t.ckpt"), CLASSES)
    assert name == "resnet18" and _same(model, resnet) and not model.training

    state = student().state_dict()
    layouts = {
        "trial": ("config.yaml", trial_config_yaml()),
        "export": ("student_config.yaml", export_config_yaml()),
    }
    for folder, (config_name, text) in layouts.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / config_name).write_text(text)
        ckpt = save_state_dict(state, tmp_path / folder / "student.ckpt")
        model, name = load_checkpoint_model(ckpt, CLASSES)
        assert name == "dsconv" and _same(model, state) and not model.training
    # An explicit --config wins, wherever the checkpoint lies.
    lone = save_state_dict(state, tmp_path / "lone" / "s.ckpt")
    model, _ = load_checkpoint_model(lone, CLASSES, tmp_path / "trial" / "config.yaml")
    assert _same(model, state)


def _one_line(error: type[Exception], *args: object) -> str:
    with pytest.raises(error) as info:
        load_checkpoint_model(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_checkpoints_and_configs_say_which_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    assert _one_line(CheckpointError, missing, CLASSES) == f"{missing}: no such file"
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    message = _one_line(CheckpointError, garbage, CLASSES)
    assert message.startswith(f"{garbage}: not a readable PyTorch checkpoint")

    lone = save_state_dict(student().state_dict(), tmp_path / "lone" / "s.ckpt")
    message = _one_line(ConfigError, lone, CLASSES)
    assert message.startswith(f"{lone}: not a ResNet18 state dict") and "--config FILE" in message
    assert _one_line(ConfigError, lone, CLASSES, tmp_path / "nope.yaml").endswith("no such file")

    wider = tmp_path / "wider.yaml"
    wider.write_text(trial_config_yaml(**{"student.widths": [16, 32, 96]}))
    message = _one_line(CheckpointError, lone, CLASSES, wider)
    assert message.startswith(f"{lone}: does not fit the dsconv student of {wider}: ")
    assert "features.3" in message  # the last stage's tensors are the ones of another shape

    other = tmp_path / "other.yaml"
    other.write_text(trial_config_yaml(num_classes=5))
    message = _one_line(ConfigError, lone, CLASSES, other)
    assert message == f"{other}: num_classes: 5, but the data has {CLASSES}"
    # The teacher's class count is checked against the data too.
    resnet = save_state_dict(teacher(5).state_dict(), tmp_path / "t5.ckpt")
    assert "the teacher has 5 classes, the data has 11" in _one_line(
        CheckpointError, resnet, CLASSES
    )


@pytest.fixture(scope="module")
def student_points() -> list:
    model = student()
    return prune_curve(
        model, own_predictions(model), (0.0, 0.5, 0.75), image_size=SIZE, device=CPU, timing=FAST
    )


def test_publish_writes_csv_and_png_and_logs_one_run(
    sweep_home: Path, tmp_path: Path, student_points: list
) -> None:
    tracker = Tracker(tracking_uri(sweep_home), EXPERIMENT, artifact_location(sweep_home))
    out = tmp_path / "curve"
    files, run_id = publish_curve(
        student_points, out, tracker, "dsconv-student", {"importance": "magnitude"}
    )

    assert files == [out / CSV_NAME, out / PNG_NAME]
    assert sorted(p.name for p in out.iterdir()) == [CSV_NAME, PNG_NAME]  # no temporaries
    text = (out / CSV_NAME).read_text()
    header, *lines = text.splitlines()
    assert header == "rate,kind,val_acc,params_dense,params_nonzero,latency_ms"
    parsed = [
        CurvePoint(float(r), k, float(acc), int(dense), int(nonzero), float(ms))
        for r, k, acc, dense, nonzero, ms in (line.split(",") for line in lines)
    ]
    assert parsed == student_points  # every value, exactly: floats are written as repr
    assert (out / PNG_NAME).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    client = MlflowClient(tracking_uri=tracking_uri(sweep_home))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "dsconv-student"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.tags["sweep.role"] == "prune-curve"
    assert run.data.params == {"importance": "magnitude"}
    assert sorted(a.path for a in client.list_artifacts(run_id)) == [CSV_NAME, PNG_NAME]
    logged_csv = client.download_artifacts(run_id, CSV_NAME, str(tmp_path))
    assert Path(logged_csv).read_text() == text

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    structured = [p for p in student_points if p.kind == "structured"]
    unstructured = [p for p in student_points if p.kind == "unstructured"]
    assert history("rate") == [(0, 0.0), (1, 0.5), (2, 0.75)]
    assert history("structured_params_dense") == [
        (i, p.params_dense) for i, p in enumerate(structured)
    ]
    assert history("unstructured_params_nonzero") == [
        (i, p.params_nonzero) for i, p in enumerate(unstructured)
    ]
    assert history("unstructured_val_acc")[0] == (0, 1.0)
    assert len(run.data.metrics) == 1 + 4 * len(KINDS)


@pytest.fixture
def space_file(tmp_path: Path, food11_dir: Path) -> Path:
    document = {
        "study": "curves",
        "dataset": {**TINY_DATASET, "root": str(food11_dir)},
        "teacher": TINY_TEACHER,
        "fixed": {**TINY_FIXED, "train.device": "cpu"},
        "params": {"student.family": {"type": "categorical", "choices": ["dsconv"]}},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_cli_writes_the_curve_and_logs_it(tmp_path: Path, space_file: Path, kind: str) -> None:
    # The food-11 fixture has 3 classes of 16-px images.
    if kind == "student":
        (tmp_path / "trial").mkdir()
        (tmp_path / "trial" / "config.yaml").write_text(trial_config_yaml(num_classes=3))
        ckpt = save_state_dict(student(3).state_dict(), tmp_path / "trial" / "student.ckpt")
    else:
        ckpt = save_state_dict(teacher(3).state_dict(), tmp_path / "teacher.ckpt")
    home, out = tmp_path / "home", tmp_path / "out"
    args = ["--space", str(space_file), "--checkpoint", str(ckpt), "--out", str(out)]
    done = sweep_cli(home, "prune-curve", *args, "--rates", "0.5,0")

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [CSV_NAME, PNG_NAME]
    rows = list(csv.DictReader(io.StringIO((out / CSV_NAME).read_text())))
    assert [(r["rate"], r["kind"]) for r in rows] == [
        (r, k) for r in ("0.0", "0.5") for k in KINDS
    ]
    dense = [int(r["params_dense"]) for r in rows]
    assert dense[0] == dense[1] == dense[3] > dense[2]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["rate", "kind", "val_acc", "dense", "nonzero", "latency_ms"]
    assert [line.split()[:2] for line in lines[1:5]] == [
        [r, k] for r in ("0", "0.5") for k in KINDS
    ]
    name = "dsconv" if kind == "student" else "resnet18"
    assert lines[5].startswith(f"{name}: wrote {out / CSV_NAME}")
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == f"{name}-{ckpt.stem}" and run.info.run_id in lines[6]
    assert run.data.params["architecture"] == name and run.data.params["rates"] == "0,0.5"


@pytest.mark.parametrize("problem", ["rates", "missing", "garbage"])
def test_cli_errors_are_one_line_naming_the_flag_or_file(
    sweep_home: Path, tmp_path: Path, space_file: Path, problem: str, capsys
) -> None:
    ckpt = tmp_path / "missing.ckpt"
    rates = "0,1.5" if problem == "rates" else "0,0.5"
    if problem == "garbage":
        ckpt.write_bytes(b"\x00garbage")
    args = ["prune-curve", "--space", str(space_file), "--checkpoint", str(ckpt)]
    assert main([*args, "--rates", rates]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    expected = {
        "rates": "--rates: 1.5 is outside [0, 1)",
        "missing": f"{ckpt}: no such file",
        "garbage": f"{ckpt}: not a readable PyTorch checkpoint",
    }[problem]
    assert line.startswith(f"sweep: error: {expected}")
    assert not (sweep_home / "mlflow.db").exists()  # nothing logged
