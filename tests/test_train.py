"""Behaviour of sweep.train on tiny, learnable random data (CPU only)."""

from __future__ import annotations

import math
import types
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.config import KDConfig, TrainConfig
from sweep.distill.temperature import temperature_at
from sweep.train import evaluate, resolve_device, train

CPU = torch.device("cpu")
NUM_CLASSES = 3
KEYS = {
    "train_loss",
    "kd_loss",
    "task_loss",
    "val_acc",
    "val_loss",
    "lr",
    "temperature",
    "epoch_seconds",
}


def _tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # The label is the brightest channel: learnable from the mean colour alone.
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    images = torch.rand(n, 3, 16, 16, generator=g)
    images[torch.arange(n), labels] += 0.5
    return images, labels


def _data(n_train: int = 96, n_val: int = 60, batch: int = 16) -> types.SimpleNamespace:
    train_set = TensorDataset(*_tensors(n_train, 1))
    val_set = TensorDataset(*_tensors(n_val, 2))
    return types.SimpleNamespace(
        train=DataLoader(train_set, batch_size=batch, shuffle=True),
        val=DataLoader(val_set, batch_size=batch),
    )


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, NUM_CLASSES),
    )


def _cfg(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {"epochs": 4, "lr": 3e-2, "lr_schedule": "constant"}
    settings.update(device="cpu", amp=False, seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def _without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in history]


def test_learns_and_reports_every_epoch() -> None:
    result = train(_student(), _data(), _cfg(epochs=5), device=CPU)
    assert result.val_acc > 1 / NUM_CLASSES + 0.3
    assert len(result.history) == 5
    for metrics in result.history:
        assert set(metrics) == KEYS
        assert all(math.isfinite(v) for v in metrics.values())
        assert metrics["temperature"] == 0.0
        assert metrics["train_loss"] == pytest.approx(metrics["task_loss"])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.val_acc == max(m["val_acc"] for m in result.history)
    assert not result.stopped_early
    assert result.train_seconds > 0


def test_on_epoch_end_sees_increasing_epochs_and_can_stop() -> None:
    seen: list[int] = []

    def callback(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append(epoch)
        assert set(metrics) == KEYS
        metrics["val_acc"] = -1.0  # the callback gets a copy; history must not change
        return epoch >= 1

    result = train(_student(), _data(), _cfg(epochs=5), on_epoch_end=callback)
    assert seen == [0, 1]
    assert result.stopped_early
    assert len(result.history) == 2
    assert all(m["val_acc"] >= 0 for m in result.history)


class _SpoilingLoader:
    """Correct labels for the first ``good`` epochs, then wrong ones, so val accuracy drops."""

    def __init__(self, loader: DataLoader, good: int) -> None:
        self.loader, self.good, self.epoch = loader, good, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        spoil = self.epoch >= self.good
        self.epoch += 1
        for images, labels in self.loader:
            yield images, (labels + 1) % NUM_CLASSES if spoil else labels


def test_best_epoch_weights_are_kept_and_loaded_back() -> None:
    data = _data()
    data.train = _SpoilingLoader(data.train, good=3)
    model = _student()
    snapshots: list[dict[str, torch.Tensor]] = []

    def callback(epoch: int, metrics: dict[str, float]) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    result = train(model, data, _cfg(epochs=6, lr=5e-2), on_epoch_end=callback)
    accs = [m["val_acc"] for m in result.history]
    assert result.best_epoch == accs.index(max(accs))
    assert result.best_epoch < 5 and accs[-1] < result.val_acc  # the last epoch is worse
    best = snapshots[result.best_epoch]
    assert result.state_dict.keys() == best.keys()
    assert all(torch.equal(result.state_dict[k], best[k]) for k in best)
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
    # The model itself now holds the best weights, and reproduces the best epoch's accuracy.
    acc, _ = evaluate(model, data.val, CPU)
    assert acc == result.history[result.best_epoch]["val_acc"] == result.val_acc


def test_same_seed_same_history() -> None:
    first = train(_student(), _data(), _cfg(seed=3))
    second = train(_student(), _data(), _cfg(seed=3))
    other = train(_student(), _data(), _cfg(seed=4))
    assert _without_time(first.history) == _without_time(second.history)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    # The seed drives the batch order, so another seed gives another run.
    assert _without_time(first.history) != _without_time(other.history)


def _teacher() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, NUM_CLASSES),
    )


def test_temperature_follows_schedule_and_teacher_stays_frozen() -> None:
    kd = KDConfig(
        alpha=0.5, temperature_start=4.0, temperature_end=1.0, temperature_schedule="linear"
    )
    teacher = _teacher()
    teacher.train()  # train() must switch it to eval, so its BatchNorm statistics stay put
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = train(_student(), _data(), _cfg(epochs=3), kd=kd, teacher=teacher)
    temps = [m["temperature"] for m in result.history]
    assert temps == [temperature_at(e, 3, 4.0, 1.0, "linear", 2) for e in range(3)]
    assert temps[0] == pytest.approx(4.0) and temps[0] > temps[-1]
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_kd_alpha_changes_the_loss() -> None:
    def run(alpha: float) -> dict[str, float]:
        kd = KDConfig(alpha=alpha, temperature_start=2.0, temperature_end=2.0)
        return train(_student(), _data(), _cfg(epochs=1), kd=kd, teacher=_teacher()).history[0]

    task_only, kd_only = run(0.0), run(1.0)
    assert task_only["train_loss"] == pytest.approx(task_only["task_loss"])
    assert kd_only["train_loss"] != pytest.approx(task_only["train_loss"])
    assert kd_only["kd_loss"] > 0


def test_teacher_without_kd_is_refused() -> None:
    with pytest.raises(ValueError, match="kd"):
        train(_student(), _data(), _cfg(epochs=1), teacher=_teacher())


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_optimizers_and_schedules(optimizer: str, schedule: str) -> None:
    cfg = _cfg(epochs=3, optimizer=optimizer, lr_schedule=schedule, lr=2e-2)
    result = train(_student(), _data(), cfg)
    assert all(math.isfinite(m["train_loss"]) for m in result.history)
    last_lr = result.history[-1]["lr"]
    if schedule == "constant":
        assert all(m["lr"] == pytest.approx(2e-2) for m in result.history)
    else:
        assert last_lr < 2e-2 * 1e-2  # annealed to (nearly) zero for the last batch
        assert result.history[0]["lr"] > last_lr


def test_sgd_without_momentum_runs_with_onecycle() -> None:
    cfg = _cfg(epochs=1, optimizer="sgd", momentum=0.0, lr_schedule="onecycle")
    assert len(train(_student(), _data(), cfg).history) == 1


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3))) * float("nan")


def test_nan_loss_raises_with_epoch_and_batch() -> None:
    with pytest.raises(FloatingPointError, match=r"epoch 0 batch 0"):
        train(_NaNModel(), _data(), _cfg(epochs=2))


def test_divergence_raises() -> None:
    cfg = _cfg(epochs=5, optimizer="sgd", momentum=0.0, lr=1e30)
    with pytest.raises(FloatingPointError, match=r"epoch \d+ batch \d+"):
        train(_student(), _data(), cfg)


def test_cpu_path_uses_no_autocast_or_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("autocast entered on the CPU path")

    monkeypatch.setattr(torch, "autocast", boom)
    model = _student()
    # The explicit device wins over cfg.device, so "cuda" in the config is never resolved here.
    result = train(model, _data(), _cfg(epochs=1, amp=True, device="cuda"), device=CPU)
    assert len(result.history) == 1
    conv = model[0].weight
    assert conv.device.type == "cpu" and conv.dtype == torch.float32
    assert conv.is_contiguous()


def test_evaluate_matches_manual_count_and_restores_mode() -> None:
    model, data = _student(), _data()
    model.train()
    acc, loss = evaluate(model, data.val, CPU)
    assert model.training
    model.eval()
    images, labels = data.val.dataset.tensors
    with torch.no_grad():
        logits = model(images)
    assert acc == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")
