"""A saved student: what rebuilds its architecture, its weights, and how it was counted.

One format serves every place a student is written or read: a trial's MLflow run
(``config.yaml`` + ``checkpoint/student.ckpt``), ``sweep export`` (``student_config.yaml`` +
``student_best.ckpt``), ``sweep prune-curve`` and ``sweep predict``. The YAML holds the
family and options, the number of classes, the factorization and structured-pruning ratio
that shaped the trained model, the preprocessing, how the budget counted it, and the whole
trial config; :func:`~sweep.compress.plan.build_planned` rebuilds the architecture from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from sweep.compress.plan import build_planned
from sweep.config import TrialConfig, from_dict, to_dict
from sweep.data.loaders import IMAGENET_MEAN, IMAGENET_STD
from sweep.errors import CheckpointError, ConfigError
from sweep.models.weights import load_state_dict_file, save_state_dict

# Where the two places that keep students put the document and the weights.
RUN_CONFIG, RUN_WEIGHTS = "config.yaml", "checkpoint/student.ckpt"  # a trial's MLflow run
EXPORT_CONFIG, EXPORT_WEIGHTS = "student_config.yaml", "student_best.ckpt"  # `sweep export`

# Keys of the document beside ``trial_config``; a trial's config.yaml before this format
# was the flat trial config plus the first two.
_HEADER = ("num_classes", "prune_ratio")


@dataclass(frozen=True)
class StudentArtifact:
    """A trained (or about to be trained) student, as sweep saves it.

    Attributes:
        config: the trial config it was trained with.
        num_classes: its outputs.
        prune_ratio: the structured-pruning ratio that shaped it (0 when unpruned).
        state_dict: its weights, when known.
        class_names: the data's class names, index order (export writes them).
    """

    config: TrialConfig
    num_classes: int
    prune_ratio: float = 0.0
    state_dict: Mapping[str, Tensor] | None = field(default=None, repr=False)
    class_names: Sequence[str] | None = None

    @property
    def family(self) -> str:
        """The student family."""
        return self.config.student.family

    def document(self) -> dict[str, Any]:
        """The YAML document that rebuilds the architecture (no weights)."""
        cfg = self.config
        return {
            "num_classes": self.num_classes,
            "prune_ratio": float(self.prune_ratio),
            "family": cfg.student.family,
            "options": dict(cfg.student.options),
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "image_size": cfg.dataset.image_size,
            "resize": cfg.dataset.resize,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "count": cfg.budget.count,
            "max_params": cfg.budget.max_params,
            "lowrank_rank_ratio": cfg.lowrank.rank_ratio,
            "trial_config": to_dict(cfg),
        }

    def build(self, config_name: str = "its config") -> nn.Module:
        """The architecture its training ended with, holding its weights when known, in eval.

        Args:
            config_name: the document's file, for the error message.

        Raises:
            CheckpointError: the weights do not fit the architecture.
        """
        model = build_planned(self.config, self.num_classes, self.prune_ratio)
        if self.state_dict is not None:
            try:
                model.load_state_dict(self.state_dict)
            except RuntimeError as exc:
                detail = " ".join(str(exc).split())  # torch lists every key on its own line
                detail = detail if len(detail) <= 300 else detail[:297] + "..."
                raise CheckpointError(
                    f"does not fit the {self.family} student of {config_name}: {detail}"
                ) from None
        return model.eval()

    def save(self, folder: Path, config_name: str, weights_name: str) -> None:
        """Write the document and the weights into ``folder`` (weights atomically)."""
        folder.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.document(), sort_keys=False)
        (folder / config_name).write_text(text)
        if self.state_dict is not None:
            save_state_dict(self.state_dict, folder / weights_name)

    @classmethod
    def from_document(
        cls, document: Any, source: str, num_classes: int | None = None
    ) -> StudentArtifact:
        """Read a document written by :meth:`document` (or a trial's older flat config).

        Args:
            document: the parsed YAML.
            source: the file it came from, for error messages.
            num_classes: the classes of the data it will meet, checked when given.

        Raises:
            ConfigError: not a mapping, another number of classes, or a bad trial config.
        """
        if not isinstance(document, dict):
            raise ConfigError(source, "", "must be a mapping (student_config.yaml or config.yaml)")
        logged = document.get("num_classes")
        if num_classes is not None and logged is not None and logged != num_classes:
            raise ConfigError(source, "num_classes", f"{logged}, but the data has {num_classes}")
        trial = document.get("trial_config")
        if trial is None:  # a trial's config.yaml as first written: flat, plus the header
            trial = {k: v for k, v in document.items() if k not in _HEADER}
        classes = logged if logged is not None else num_classes
        if classes is None:
            raise ConfigError(source, "num_classes", "missing")
        return cls(
            config=from_dict(trial, source),
            num_classes=int(classes),
            prune_ratio=float(document.get("prune_ratio") or 0.0),
            class_names=document.get("class_names"),
        )

    @classmethod
    def load(
        cls, config: Path, weights: Path | None = None, num_classes: int | None = None
    ) -> StudentArtifact:
        """Read a saved student: its YAML, and its weights when ``weights`` is given.

        Raises:
            ConfigError: the YAML is missing, unreadable or does not describe a student.
            CheckpointError: the weights file is missing, unreadable or holds code.
        """
        try:
            document = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            reason = getattr(exc, "strerror", None) or "not valid YAML"
            raise ConfigError(str(config), "", f"cannot read: {reason}") from None
        artifact = cls.from_document(document, str(config), num_classes)
        if weights is None:
            return artifact
        state = load_state_dict_file(weights)
        return replace(artifact, state_dict=state)
