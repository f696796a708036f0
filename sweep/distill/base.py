"""What a training step asks of distillation: one batch in, its loss parts out.

A distiller is registered under the ``kd.method`` names it serves
(:func:`register_distiller`), and everything that depends on the method asks its class:
which network teaches (:meth:`Distiller.teacher_network`), whether the study needs the
teacher at all (:meth:`Distiller.needs_teacher`), whether cached soft labels can stand in
for it (:attr:`Distiller.replays_soft_labels`). :class:`Distiller` itself is Hinton's loss on
logits (``hinton``); :mod:`sweep.distill.distillers` has the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from torch import Tensor, nn

from sweep.config import TrialConfig, check_kd_method
from sweep.data.protocol import TrainData
from sweep.distill.losses import distillation_loss

Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


class TeacherContext(Protocol):
    """What a distiller may read of a trial's context to pick or build the network that teaches.

    :class:`~sweep.search.objective.TrialContext` is one; distillation does not import it, nor
    the teacher package that trains an assistant (a layer above this one).
    """

    home: Path
    num_classes: int
    teacher: nn.Module | None
    teacher_path: Path | None

    def data(self, cfg: TrialConfig) -> TrainData:
        """The data of a trial with settings ``cfg``."""
        ...

    def assistant(self, cfg: TrialConfig) -> nn.Module:
        """TAKD's assistant for ``cfg``: distilled from the teacher once, then reused."""
        ...


@dataclass(frozen=True)
class DistillBatch:
    """One training batch as a distiller sees it.

    Attributes:
        images: the batch's images, on the device.
        labels: their class indices.
        student_logits: the student's outputs, float32.
        teacher_logits: the teacher's (live or cached), float32, or None.
        alpha: weight of the distillation term.
        temperature: this epoch's temperature.
        label_smoothing: of the cross-entropy term.
        autocast: enters the step's mixed precision (for networks the distiller runs itself).
    """

    images: Tensor
    labels: Tensor
    student_logits: Tensor
    teacher_logits: Tensor | None
    alpha: float
    temperature: float
    label_smoothing: float
    autocast: Autocast


class Distiller:
    """Hinton's distillation loss on logits (plain cross-entropy without teacher logits).

    Subclasses may train modules of their own (a hint regressor, a peer student): they are
    optimised with the student but are not part of it.
    """

    replays_soft_labels: ClassVar[bool] = True  # the teacher's logits on the batch suffice

    @classmethod
    def create(
        cls,
        cfg: TrialConfig,
        model: nn.Module,
        teacher: nn.Module | None,
        num_classes: int,
    ) -> Distiller:
        """The distiller of one trial (``teacher`` from :meth:`teacher_network`)."""
        return cls()

    @classmethod
    def needs_teacher(cls, cfg: TrialConfig) -> bool:
        """Whether a trial with these settings needs the study's teacher at all."""
        return cfg.kd.alpha > 0

    @classmethod
    def teacher_network(
        cls, cfg: TrialConfig, teacher: nn.Module, context: TeacherContext, cached_logits: bool
    ) -> nn.Module | None:
        """The network that runs on each batch, given the study's ``teacher``; None for none.

        ``context`` serves methods that build a teacher of their own (TAKD's assistant).
        """
        return teacher if cls.needs_teacher(cfg) and not cached_logits else None

    def extra_modules(self) -> list[nn.Module]:
        """Modules trained alongside the student (not exported, not counted)."""
        return []

    def model_changed(self, model: nn.Module) -> None:
        """The student's architecture changed (pruned, factorized); adapt to it."""

    def loss(self, batch: DistillBatch) -> dict[str, Tensor]:
        """The batch's loss parts; ``loss`` is what is minimised."""
        return distillation_loss(
            batch.student_logits,
            batch.teacher_logits,
            batch.labels,
            alpha=batch.alpha,
            temperature=batch.temperature,
            label_smoothing=batch.label_smoothing,
        )

    def close(self) -> None:
        """Release what the distiller hooked (nothing here)."""


DISTILLERS: dict[str, type[Distiller]] = {}


def register_distiller(*methods: str) -> Callable[[type[Distiller]], type[Distiller]]:
    """Register a distiller class under ``kd.method`` names.

    Raises:
        ValueError: a name is already registered (a silent override would change old runs),
            or is not one of :data:`sweep.config.KD_METHOD_NAMES` (settings would refuse it).
    """

    def decorator(cls: type[Distiller]) -> type[Distiller]:
        for method in methods:
            check_kd_method(method)
            if method in DISTILLERS:
                raise ValueError(f"kd.method {method!r} already has a distiller")
            DISTILLERS[method] = cls
        return cls

    return decorator


register_distiller("hinton")(Distiller)


def distiller_class(method: str) -> type[Distiller]:
    """The distiller registered for ``kd.method``.

    Raises:
        ValueError: no distiller serves ``method``; the message lists those that do.
    """
    if method not in DISTILLERS:
        raise ValueError(f"unknown kd method {method!r}; known: {', '.join(sorted(DISTILLERS))}")
    return DISTILLERS[method]
