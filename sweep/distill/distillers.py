"""The distillers beyond Hinton's: feature losses (fitnet, rkd), TAKD's assistant, DML's peer.

:mod:`sweep.distill.methods` holds the losses; each class here wires one to a training run:
the feature taps it reads, the modules it trains beside the student (FitNet's regressor,
DML's peer), and which network teaches (the ResNet18, TAKD's assistant, or none when a peer
stands in for it). Everything is looked up once, by ``kd.method``, through
:func:`~sweep.distill.base.distiller_class`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sweep.config import TrialConfig
from sweep.distill.base import (
    DistillBatch,
    Distiller,
    TeacherContext,
    distiller_class,
    register_distiller,
)
from sweep.distill.methods import dml_loss, kd_method, method_loss
from sweep.distill.taps import (
    FeatureTap,
    HintRegressor,
    build_hint_regressor,
    student_taps,
    teacher_taps,
)
from sweep.models.registry import create_student


@register_distiller("fitnet", "rkd")
class FeatureDistiller(Distiller):
    """Hinton's loss on logits plus the method's feature loss on tapped features.

    Args:
        cfg: the trial's settings (``kd.method``, ``kd.feature_weight``, image size).
        model: the student; its taps are hooked now, before training compiles it.
        teacher: the network that runs on each batch; its features are tapped too.
    """

    replays_soft_labels = False  # the teacher's features, not only its logits

    def __init__(self, cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None) -> None:
        if teacher is None:
            raise ValueError(f"kd.method {cfg.kd.method} reads the teacher's features")
        self.method = cfg.kd.method
        self.feature_weight = cfg.kd.feature_weight
        self.image_size = cfg.dataset.image_size
        self.teacher = teacher
        self.student_tap = FeatureTap(student_taps(model))
        self.teacher_tap = FeatureTap(teacher_taps(teacher))
        self.regressor: HintRegressor | None = None
        if kd_method(self.method).hint_regressor:
            self.regressor = build_hint_regressor(model, teacher, self.image_size)

    @classmethod
    def create(
        cls, cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None, num_classes: int
    ) -> Distiller:
        """Hook the student and the teacher."""
        return cls(cfg, model, teacher)

    @classmethod
    def needs_teacher(cls, cfg: TrialConfig) -> bool:
        """Always: the feature loss reads the teacher even at ``kd.alpha`` 0."""
        return True

    @classmethod
    def teacher_network(
        cls, cfg: TrialConfig, teacher: nn.Module, context: TeacherContext, cached_logits: bool
    ) -> nn.Module | None:
        """The study's teacher, live on every batch."""
        return teacher

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

    def loss(self, batch: DistillBatch) -> dict[str, Tensor]:
        """See :func:`~sweep.distill.methods.method_loss`."""
        return method_loss(
            self.method,
            student_logits=batch.student_logits,
            teacher_logits=batch.teacher_logits,
            targets=batch.labels,
            alpha=batch.alpha,
            temperature=batch.temperature,
            label_smoothing=batch.label_smoothing,
            student_feats=self.student_tap.features,
            teacher_feats=self.teacher_tap.features,
            regressor=self.regressor,
            feature_weight=self.feature_weight,
        )

    def close(self) -> None:
        """Remove the feature hooks from the student and the teacher."""
        self.student_tap.close()
        self.teacher_tap.close()


@register_distiller("takd")
class AssistantDistiller(Distiller):
    """TAKD: Hinton's loss, taught by an assistant first distilled from the teacher.

    The assistant comes from the trial's context (``context.assistant``, which
    :func:`sweep.teacher.assistant.ensure_assistant` trains once per study setting and
    caches); it runs live on each batch, so soft labels are not replayed.
    """

    replays_soft_labels = False  # the assistant's logits are not cached

    @classmethod
    def teacher_network(
        cls, cfg: TrialConfig, teacher: nn.Module, context: TeacherContext, cached_logits: bool
    ) -> nn.Module | None:
        """The assistant, distilled from the study's teacher (once), when ``kd.alpha`` > 0."""
        if not cls.needs_teacher(cfg):
            return None
        return context.assistant(cfg)


@register_distiller("dml")
class MutualDistiller(Distiller):
    """Deep mutual learning: a peer of the student's architecture trains with it.

    Each network learns from the labels and from the other's predictions
    (:func:`~sweep.distill.methods.dml_loss`); the sum of the two losses is minimised, so one
    backward pass trains both. The budget and the export concern the student only.
    """

    replays_soft_labels = False  # no teacher at all

    def __init__(self, cfg: TrialConfig, num_classes: int) -> None:
        # A different initialisation: two copies of the same net would teach each other nothing.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + 1)
            self.peer = create_student(cfg.student.family, num_classes, cfg.student.options)

    @classmethod
    def create(
        cls, cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None, num_classes: int
    ) -> Distiller:
        """A peer of the student's family and options."""
        return cls(cfg, num_classes)

    @classmethod
    def needs_teacher(cls, cfg: TrialConfig) -> bool:
        """Never: the peer teaches."""
        return False

    def extra_modules(self) -> list[nn.Module]:
        """The peer student."""
        return [self.peer]

    def loss(self, batch: DistillBatch) -> dict[str, Tensor]:
        """Both networks' DML losses; the student's parts, and the peer's as ``peer_loss``."""
        self.peer.train()
        with batch.autocast():
            peer_logits = self.peer(batch.images)
        own, peer = dml_loss(
            batch.student_logits,
            peer_logits.float(),
            batch.labels,
            temperature=batch.temperature,
            label_smoothing=batch.label_smoothing,
        )
        return {**own, "loss": own["loss"] + peer["loss"], "peer_loss": peer["loss"]}


def make_distiller(
    cfg: TrialConfig, model: nn.Module, teacher: nn.Module | None, num_classes: int
) -> Distiller:
    """The distiller for ``kd.method``; ``teacher`` from :func:`trial_teacher`."""
    return distiller_class(cfg.kd.method).create(cfg, model, teacher, num_classes)


def replays_soft_labels(cfg: TrialConfig) -> bool:
    """Whether the method needs nothing from the teacher but its logits on the batch."""
    return distiller_class(cfg.kd.method).replays_soft_labels


def trial_teacher(
    cfg: TrialConfig, context: TeacherContext, cached_logits: bool
) -> nn.Module | None:
    """The network that runs on each of the trial's batches, or None.

    None when the study has no teacher, when the batches carry the teacher's cached logits,
    when DML's peer stands in for a teacher, or when nothing distils (``kd.alpha`` 0, no
    feature loss).
    """
    if context.teacher is None:
        return None
    method = distiller_class(cfg.kd.method)
    return method.teacher_network(cfg, context.teacher, context, cached_logits)
