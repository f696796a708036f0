"""The loss of each ``kd.method`` inside :func:`~sweep.train.train`, and who teaches.

:mod:`sweep.kd_methods` holds the losses; this module wires them to a training run: the
feature taps a method reads, the modules it trains beside the student (FitNet's regressor,
DML's peer), and which network runs as the teacher (the ResNet18, TAKD's assistant, or none
when cached soft labels or a peer stand in for it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sweep.config import TrialConfig
from sweep.distill import Autocast
from sweep.feature_taps import (
    FeatureTap,
    HintRegressor,
    build_hint_regressor,
    student_taps,
    teacher_taps,
)
from sweep.kd_methods import dml_loss, kd_method, method_loss
from sweep.students import create_student


class MethodDistiller:
    """Hinton's loss on logits plus the method's feature loss (fitnet, rkd); hinton, takd.

    Args:
        cfg: the trial's settings (``kd.method``, ``kd.feature_weight``, image size).
        model: the student; its taps are hooked now, before training compiles it.
        teacher: the network that runs on each batch (needed by feature methods).
    """

    def __init__(self, cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None) -> None:
        self.method = cfg.kd.method
        self.feature_weight = cfg.kd.feature_weight
        self.image_size = cfg.dataset.image_size
        self.teacher = teacher
        self.student_tap: FeatureTap | None = None
        self.teacher_tap: FeatureTap | None = None
        self.regressor: HintRegressor | None = None
        if kd_method(self.method).needs_teacher_features:
            if teacher is None:
                raise ValueError(f"kd.method {self.method} reads the teacher's features")
            self.student_tap = FeatureTap(student_taps(model))
            self.teacher_tap = FeatureTap(teacher_taps(teacher))
        if kd_method(self.method).hint_regressor:
            self.regressor = build_hint_regressor(model, teacher, self.image_size)

    def extra_modules(self) -> list[nn.Module]:
        """FitNet's regressor, trained with the student and never exported."""
        return [self.regressor] if self.regressor is not None else []

    def model_changed(self, model: nn.Module) -> None:
        """Pruning changed the student's last stage: a fresh regressor of the new width."""
        if self.regressor is None:
            return
        fresh = build_hint_regressor(model, self.teacher, self.image_size)
        if fresh.conv.in_channels != self.regressor.conv.in_channels:
            self.regressor = fresh

    def loss(
        self,
        images: Tensor,
        labels: Tensor,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        *,
        alpha: float,
        temperature: float,
        label_smoothing: float,
        autocast: Autocast,
    ) -> dict[str, Tensor]:
        """See :func:`~sweep.kd_methods.method_loss`."""
        return method_loss(
            self.method,
            student_logits=student_logits,
            teacher_logits=teacher_logits,
            targets=labels,
            alpha=alpha,
            temperature=temperature,
            label_smoothing=label_smoothing,
            student_feats=self.student_tap.features if self.student_tap else None,
            teacher_feats=self.teacher_tap.features if self.teacher_tap else None,
            regressor=self.regressor,
            feature_weight=self.feature_weight,
        )

    def close(self) -> None:
        """Remove the feature hooks from the student and the teacher."""
        for tap in (self.student_tap, self.teacher_tap):
            if tap is not None:
                tap.close()


class MutualDistiller:
    """Deep mutual learning: a peer of the student's architecture trains with it.

    Each network learns from the labels and from the other's predictions
    (:func:`~sweep.kd_methods.dml_loss`); the sum of the two losses is minimised, so one
    backward pass trains both. The budget and the export concern the student only.
    """

    def __init__(self, cfg: TrialConfig, num_classes: int) -> None:
        # A different initialisation: two copies of the same net would teach each other nothing.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + 1)
            self.peer = create_student(cfg.student.family, num_classes, cfg.student.options)

    def extra_modules(self) -> list[nn.Module]:
        """The peer student."""
        return [self.peer]

    def model_changed(self, model: nn.Module) -> None:
        """The peer is not pruned: it only teaches."""

    def loss(
        self,
        images: Tensor,
        labels: Tensor,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        *,
        alpha: float,
        temperature: float,
        label_smoothing: float,
        autocast: Autocast,
    ) -> dict[str, Tensor]:
        """Both networks' DML losses; the student's parts, and the peer's as ``peer_loss``."""
        self.peer.train()
        with autocast():
            peer_logits = self.peer(images)
        own, peer = dml_loss(
            student_logits,
            peer_logits.float(),
            labels,
            temperature=temperature,
            label_smoothing=label_smoothing,
        )
        return {**own, "loss": own["loss"] + peer["loss"], "peer_loss": peer["loss"]}

    def close(self) -> None:
        """Nothing is hooked."""


def make_distiller(
    cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None, num_classes: int
) -> MethodDistiller | MutualDistiller:
    """The distiller for ``kd.method``; ``teacher`` from :func:`trial_teacher`."""
    if kd_method(cfg.kd.method).peer_student:
        return MutualDistiller(cfg, num_classes)
    return MethodDistiller(cfg, model, teacher)


def replays_soft_labels(cfg: TrialConfig) -> bool:
    """Whether the method needs nothing from the teacher but its logits on the batch."""
    spec = kd_method(cfg.kd.method)
    return not (spec.needs_teacher_features or spec.assistant or spec.peer_student)


def trial_teacher(cfg: TrialConfig, context: Any, cached_logits: bool) -> nn.Module | None:
    """The network that runs on each of the trial's batches, or None.

    None when the batches carry the teacher's cached logits, when DML's peer stands in for
    a teacher, or when nothing distils (``kd.alpha`` 0, no feature loss). TAKD's assistant
    is distilled from the teacher once (:func:`sweep.assistant.ensure_assistant`).
    """
    spec = kd_method(cfg.kd.method)
    if spec.peer_student or context.teacher is None:
        return None
    if spec.assistant:
        from sweep.assistant import ensure_assistant

        return ensure_assistant(cfg, context) if cfg.kd.alpha > 0 else None
    if spec.needs_teacher_features:
        return context.teacher
    return context.teacher if cfg.kd.alpha > 0 and not cached_logits else None
