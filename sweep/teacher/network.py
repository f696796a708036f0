"""The ResNet18 teacher: build, load (the course's checkpoint format), save, train from scratch.

Knows training (``sweep.train``) but nothing of Optuna or MLflow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from sweep.config import TeacherConfig, TrainConfig
from sweep.data.protocol import TrainData
from sweep.errors import CheckpointError
from sweep.models.weights import read_checkpoint, unwrap_state_dict
from sweep.train import BatchCallback, EpochCallback, TrainResult, train

_SHOW_KEYS = 3


def build_teacher(num_classes: int) -> nn.Module:
    """A ResNet18 with ``num_classes`` outputs, randomly initialised (never pretrained).

    Args:
        num_classes: number of output classes.

    Returns:
        The model (11,182,155 parameters for 11 classes).
    """
    return resnet18(weights=None, num_classes=num_classes)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW_KEYS])
    more = len(keys) - _SHOW_KEYS
    return f"{shown} (+{more} more)" if more > 0 else shown


def _check_matches(path: Path, state: dict[str, Tensor], model: nn.Module) -> None:
    expected = model.state_dict()
    # BatchNorm counters are absent from some older checkpoints and do not affect the outputs.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_listing(unexpected)}")
        raise CheckpointError(f"{path}: not a ResNet18 state dict: {'; '.join(parts)}")
    head = state.get("fc.weight")
    num_classes = expected["fc.weight"].shape[0]
    if head is not None and head.ndim == 2 and head.shape[0] != num_classes:
        raise CheckpointError(
            f"{path}: the teacher has {head.shape[0]} classes, the data has {num_classes}"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: shape mismatch at {key}: checkpoint {list(value.shape)}, "
                f"ResNet18 expects {list(expected[key].shape)}"
            )


def load_teacher(path: str | Path, num_classes: int) -> nn.Module:
    """Load a ResNet18 teacher from a checkpoint, on CPU, in eval mode.

    Accepts a plain ``state_dict`` of ``resnet18(num_classes=...)`` (the course's
    ``resnet18_teacher.ckpt``), or a dict holding one under ``"state_dict"`` or ``"model"``;
    a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) key prefix is stripped.
    Only tensors are unpickled (``weights_only=True``).

    Args:
        path: the checkpoint file.
        num_classes: number of classes of the data the teacher will be used on.

    Returns:
        The ResNet18 with the checkpoint's weights, in eval mode.

    Raises:
        CheckpointError: the file is missing, unreadable, not a state dict, or does not fit a
            ResNet18 with ``num_classes`` outputs; the message names the file and the problem.
    """
    path = Path(path)
    state = unwrap_state_dict(path, read_checkpoint(path))
    model = build_teacher(num_classes)
    _check_matches(path, state, model)
    model.load_state_dict(state, strict=False)  # strictness checked above, with better messages
    return model.eval()


def teacher_train_config(teacher: TeacherConfig, base: TrainConfig) -> TrainConfig:
    """The TrainConfig for training the teacher from scratch.

    Epochs, lr, weight decay, batch size and label smoothing come from ``teacher``; device,
    AMP, seed and workers from ``base``; the optimiser is AdamW with a cosine schedule.

    Args:
        teacher: the teacher settings.
        base: the trial's (student) training settings.

    Returns:
        The teacher's TrainConfig.
    """
    return dataclasses.replace(
        base,
        epochs=teacher.epochs,
        lr=teacher.lr,
        weight_decay=teacher.weight_decay,
        batch_size=teacher.batch_size,
        label_smoothing=teacher.label_smoothing,
        optimizer="adamw",
        lr_schedule="cosine",
    )


def train_teacher(
    data: TrainData,
    num_classes: int,
    cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
    on_batch_end: BatchCallback | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train a fresh ResNet18 with plain cross-entropy (no distillation).

    Args:
        data: has ``train`` and ``val`` loaders (built with ``cfg.batch_size``).
        num_classes: number of classes.
        cfg: e.g. from :func:`teacher_train_config`.
        on_epoch_end: as for :func:`sweep.train.train`.
        on_batch_end: as for :func:`sweep.train.train`.

    Returns:
        The model (best-epoch weights loaded, eval mode) and the training result.
    """
    # Seed before building so the initial weights, not only the batch order, are reproducible.
    torch.manual_seed(cfg.seed)
    model = build_teacher(num_classes)
    result = train(model, data, cfg, on_epoch_end=on_epoch_end, on_batch_end=on_batch_end)
    return model.eval(), result
