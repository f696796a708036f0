"""Load any model sweep wrote, from its state dict: the ResNet18 teacher or a trial's student.

A teacher is recognised by its keys. A student is rebuilt from its config
(``student_config.yaml`` from ``sweep export``, or a trial's ``config.yaml``) through
:class:`~sweep.compress.artifact.StudentArtifact`, so a pruned or factorized student loads into the
architecture its training ended with.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import Tensor, nn

from sweep.compress.artifact import EXPORT_CONFIG, RUN_CONFIG, StudentArtifact
from sweep.errors import CheckpointError, ConfigError
from sweep.models.weights import load_state_dict_file
from sweep.teacher.network import load_teacher

CONFIG_NAMES = (EXPORT_CONFIG, RUN_CONFIG)  # `sweep export`'s, then a trial's
TEACHER_KEYS = ("layer1.0.conv1.weight", "fc.weight")  # a ResNet18 has them, no student does


def _load_student(
    path: Path, state: dict[str, Tensor], config: Path, num_classes: int
) -> tuple[nn.Module, str]:
    artifact = StudentArtifact.load(config, num_classes=num_classes)
    artifact = replace(artifact, state_dict=state)
    try:
        return artifact.build(str(config)), artifact.family  # as pruned or factorized
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


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
    state = load_state_dict_file(path)
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
