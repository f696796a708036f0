"""Load any model sweep wrote, from its state dict: the ResNet18 teacher or a trial's student.

A teacher is recognised by its keys. A student is rebuilt from its config
(``student_config.yaml`` from ``sweep export``, or a trial's ``config.yaml``) through
:func:`~sweep.compression.build_planned`, so a pruned or factorized student loads into the
architecture its training ended with.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from torch import Tensor, nn

from sweep.compression import build_planned
from sweep.config import TrialConfig, from_dict
from sweep.errors import CheckpointError, ConfigError
from sweep.teacher import load_teacher, read_checkpoint, unwrap_state_dict

CONFIG_NAMES = ("student_config.yaml", "config.yaml")  # `sweep export`'s, then a trial's
TEACHER_KEYS = ("layer1.0.conv1.weight", "fc.weight")  # a ResNet18 has them, no student does


def _student_config(path: Path, num_classes: int) -> tuple[TrialConfig, float]:
    """The trial config a student was trained with, and its structured pruning ratio."""
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        reason = getattr(exc, "strerror", None) or "not valid YAML"
        raise ConfigError(source, "", f"cannot read: {reason}") from None
    if not isinstance(document, dict):
        raise ConfigError(source, "", "must be a mapping (student_config.yaml or config.yaml)")
    logged = document.get("num_classes")
    if logged is not None and logged != num_classes:
        raise ConfigError(source, "num_classes", f"{logged}, but the data has {num_classes}")
    ratio = document.get("prune_ratio") or 0.0  # both files record it (0 when unpruned)
    trial = document.get("trial_config")  # `sweep export`; a trial's config.yaml is flat
    if trial is None:
        trial = {k: v for k, v in document.items() if k not in ("num_classes", "prune_ratio")}
    return from_dict(trial, source), float(ratio)


def _load_student(
    path: Path, state: dict[str, Tensor], config: Path, num_classes: int
) -> tuple[nn.Module, str]:
    cfg, prune_ratio = _student_config(config, num_classes)
    family = cfg.student.family
    model = build_planned(cfg, num_classes, prune_ratio)  # as pruned or factorized in training
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())  # torch lists every key on its own line
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise CheckpointError(
            f"{path}: does not fit the {family} student of {config}: {detail}"
        ) from None
    return model.eval(), family


def load_checkpoint_model(
    checkpoint: str | Path, num_classes: int, config: str | Path | None = None
) -> tuple[nn.Module, str]:
    """Load a ResNet18 teacher or a student from a state dict, on CPU, in eval mode.

    A teacher is recognised by its keys and needs no config. A student is rebuilt from
    ``config`` (``student_config.yaml`` from ``sweep export`` or a trial's ``config.yaml``),
    by default the first of those two found next to the checkpoint.

    Args:
        checkpoint: the state dict file (``student.ckpt``, ``student_best.ckpt``, a teacher).
        num_classes: classes of the data it is evaluated on.
        config: the student's config file.

    Returns:
        The model and its architecture name (``resnet18`` or the student family).

    Raises:
        CheckpointError: the file is missing, unreadable, or does not fit the architecture.
        ConfigError: a student without a readable config, or one for other classes.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    state = unwrap_state_dict(path, read_checkpoint(path))
    if all(key in state for key in TEACHER_KEYS):
        return load_teacher(path, num_classes), "resnet18"
    if config is None:
        found = [path.parent / name for name in CONFIG_NAMES if (path.parent / name).is_file()]
        names = " or ".join(CONFIG_NAMES)
        if not found:
            problem = f"not a ResNet18 state dict, and no {names} next to it; pass --config FILE"
            raise ConfigError(str(path), "", problem)
        config = found[0]
    config = Path(config)
    if not config.is_file():
        raise ConfigError(str(config), "", "no such file")
    return _load_student(path, state, config, num_classes)
