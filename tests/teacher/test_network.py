"""sweep.teacher.network: the ResNet18 teacher's build, checkpoint I/O and training."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.config import TeacherConfig, TrainConfig
from sweep.errors import CheckpointError
from sweep.models.weights import save_state_dict
from sweep.teacher.network import build_teacher, load_teacher, teacher_train_config, train_teacher


@pytest.fixture(scope="module")
def course_state() -> dict[str, torch.Tensor]:
    """A state dict in the course's format: resnet18(num_classes=11).state_dict()."""
    torch.manual_seed(11)
    return build_teacher(11).state_dict()


def _same(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def _message(path: Path, num_classes: int = 11) -> str:
    with pytest.raises(CheckpointError) as info:
        load_teacher(path, num_classes)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_param_count_matches_the_course() -> None:
    model = build_teacher(11)
    assert sum(p.numel() for p in model.parameters()) == 11_182_155
    assert model.fc.out_features == 11


def test_save_then_load_round_trips(tmp_path: Path, course_state: dict) -> None:
    path = save_state_dict(course_state, tmp_path / "sub" / "teacher.ckpt")
    assert path == tmp_path / "sub" / "teacher.ckpt"
    model = load_teacher(path, 11)
    assert _same(model, course_state)
    assert not model.training
    assert sorted(p.name for p in path.parent.iterdir()) == ["teacher.ckpt"]  # no temp files


def test_failed_save_leaves_old_file_and_no_temp(
    tmp_path: Path, course_state: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_state_dict({"w": torch.ones(2)}, tmp_path / "t.ckpt")
    old = path.read_bytes()

    def crash(obj: object, f: object) -> None:
        f.write(b"half")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_state_dict(course_state, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["t.ckpt"]


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix", "both"])
def test_course_format_and_wrapped_variants_load(
    tmp_path: Path, course_state: dict, wrap: str
) -> None:
    prefixed = {f"module.{k}": v for k, v in course_state.items()}
    obj = {
        "plain": course_state,
        "state_dict": {"state_dict": course_state, "epoch": 29},
        "model": {"model": course_state, "optimizer": {"lr": 1e-3}},
        "module_prefix": prefixed,
        "both": {"state_dict": prefixed},
    }[wrap]
    path = tmp_path / "resnet18_teacher.ckpt"
    torch.save(obj, path)
    assert _same(load_teacher(path, 11), course_state)


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _message(tmp_path / "nope.ckpt")


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"\x00\x01 this is not a checkpoint \xff" * 10)
    assert "not a readable PyTorch checkpoint" in _message(path)


def test_dict_of_non_tensors(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    torch.save({"epoch": 3, "name": "resnet"}, path)
    message = _message(path)
    assert "not a state dict" in message and "'epoch'" in message


def test_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.ckpt"
    torch.save([torch.zeros(1)], path)
    assert "not a state dict" in _message(path)


def test_wrong_num_classes(tmp_path: Path, course_state: dict) -> None:
    path = save_state_dict(course_state, tmp_path / "t.ckpt")
    assert "has 11 classes, the data has 10" in _message(path, num_classes=10)


def test_other_architecture(tmp_path: Path) -> None:
    path = tmp_path / "mlp.ckpt"
    torch.save(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 11)).state_dict(), path)
    message = _message(path)
    assert "missing keys conv1.weight" in message
    assert "unexpected keys 0.weight" in message
    assert "more)" in message  # long key lists are cut to the first few


def test_shape_mismatch_other_than_classes(tmp_path: Path, course_state: dict) -> None:
    state = dict(course_state)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = save_state_dict(state, tmp_path / "t.ckpt")
    assert "shape mismatch at conv1.weight" in _message(path)


class _Thing:
    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.mark.parametrize("obj", [_Thing(), nn.Linear(2, 2)], ids=["object", "whole_module"])
def test_pickled_objects_are_refused(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "pickled.ckpt"
    torch.save(obj, path)
    assert "refused by weights-only loading" in _message(path)


def test_teacher_train_config_takes_teacher_settings() -> None:
    base = TrainConfig(
        epochs=3,
        lr=0.1,
        optimizer="sgd",
        lr_schedule="onecycle",
        seed=5,
        device="cpu",
        amp=False,
        num_workers=2,
        batch_size=32,
    )
    teacher = TeacherConfig(
        epochs=7, lr=2e-3, weight_decay=1e-3, batch_size=16, label_smoothing=0.2
    )
    cfg = teacher_train_config(teacher, base)
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.label_smoothing) == (
        7,
        2e-3,
        1e-3,
        16,
        0.2,
    )
    assert (cfg.optimizer, cfg.lr_schedule) == ("adamw", "cosine")
    assert (cfg.seed, cfg.device, cfg.amp, cfg.num_workers) == (5, "cpu", False, 2)


def test_train_teacher_changes_weights() -> None:
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 11
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    data = types.SimpleNamespace(train=loader, val=loader)
    cfg = TrainConfig(epochs=1, lr=1e-3, seed=1, device="cpu", amp=False)
    epochs: list[int] = []
    model, result = train_teacher(data, 11, cfg, on_epoch_end=lambda e, m: epochs.append(e))
    torch.manual_seed(cfg.seed)
    initial = build_teacher(11).state_dict()
    assert epochs == [0] and len(result.history) == 1 and result.best_epoch == 0
    assert not model.training
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert _same(model, result.state_dict)
