"""Knowledge distillation on logits (Hinton et al., 2015) and temperature schedules.

This module knows nothing about Optuna or MLflow: it turns logits into losses and an epoch
into a temperature.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# fn(epoch, epochs, start, end, steps) -> temperature, called with epochs >= 2.
TemperatureSchedule = Callable[[int, int, float, float, int], float]
TEMPERATURE_SCHEDULES: dict[str, TemperatureSchedule] = {}


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    targets: Tensor,
    *,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """Hinton's distillation loss: ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(s, y)``.

    ``p_t = softmax(teacher / T)`` and ``p_s = softmax(student / T)``; the KL divergence is summed
    over classes and averaged over the batch (``reduction="batchmean"``, the true KL; "mean"
    would also divide by the number of classes). The ``T^2`` keeps the soft-target gradients on
    the same scale as the hard-target ones whatever ``T`` is. Everything is computed in float32,
    since a bf16/fp16 softmax at high temperature loses most of the teacher's small
    probabilities. No gradient flows into the teacher.

    Args:
        student_logits: ``[B, C]``, any float dtype.
        teacher_logits: ``[B, C]``, or None to train on the labels alone.
        targets: ``[B]`` class indices.
        alpha: weight of the distillation term, in [0, 1].
        temperature: softmax temperature T > 0.
        label_smoothing: label smoothing of the cross-entropy term.

    Returns:
        ``{"loss", "kd_loss", "task_loss"}`` as float32 scalars: ``kd_loss`` is ``T^2 * KL``
        before ``alpha``, ``task_loss`` the cross-entropy. Without a teacher ``loss`` is
        ``task_loss`` and ``kd_loss`` is 0.

    Raises:
        ValueError: ``alpha`` outside [0, 1], ``temperature <= 0``, or logits of different shapes.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student = student_logits.float()
    task_loss = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    if teacher_logits is None:
        kd_loss = torch.zeros((), dtype=torch.float32, device=student.device)
        return {"loss": task_loss, "kd_loss": kd_loss, "task_loss": task_loss}
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match student logits "
            f"{tuple(student_logits.shape)}"
        )
    teacher = teacher_logits.detach().float()
    # kl_div(input, target) is KL(target || input): the teacher's distribution is the target.
    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    kd_loss = kl * temperature**2
    loss = alpha * kd_loss + (1.0 - alpha) * task_loss
    return {"loss": loss, "kd_loss": kd_loss, "task_loss": task_loss}


def register_temperature_schedule(
    name: str,
) -> Callable[[TemperatureSchedule], TemperatureSchedule]:
    """Register ``fn(epoch, epochs, start, end, steps) -> float`` as a temperature schedule.

    The function is only called with ``epochs >= 2``; :func:`temperature_at` answers ``start``
    for a single epoch.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(schedule: TemperatureSchedule) -> TemperatureSchedule:
        if name in TEMPERATURE_SCHEDULES:
            raise ValueError(f"temperature schedule {name!r} is already registered")
        TEMPERATURE_SCHEDULES[name] = schedule
        return schedule

    return decorator


def _lerp(start: float, end: float, weight: float) -> float:
    # This form returns start and end exactly at weights 0 and 1 (start + (end - start) * w
    # can miss end by a rounding error), and start itself when the two are equal.
    return start if start == end else start * (1.0 - weight) + end * weight


@register_temperature_schedule("constant")
def _constant(epoch: int, epochs: int, start: float, end: float, steps: int) -> float:
    return start


@register_temperature_schedule("linear")
def _linear(epoch: int, epochs: int, start: float, end: float, steps: int) -> float:
    return _lerp(start, end, epoch / (epochs - 1))


@register_temperature_schedule("cosine")
def _cosine(epoch: int, epochs: int, start: float, end: float, steps: int) -> float:
    return _lerp(start, end, (1.0 - math.cos(math.pi * epoch / (epochs - 1))) / 2.0)


@register_temperature_schedule("step")
def _step(epoch: int, epochs: int, start: float, end: float, steps: int) -> float:
    if steps == 1:
        return start
    stage = min(epoch * steps // epochs, steps - 1)
    return _lerp(start, end, stage / (steps - 1))


def temperature_at(
    epoch: int,
    epochs: int,
    start: float,
    end: float,
    schedule: str = "constant",
    steps: int = 2,
) -> float:
    """Return the distillation temperature for a 0-based ``epoch`` of ``epochs``.

    ``constant`` stays at ``start``; ``linear`` and ``cosine`` (a half cosine) go from ``start``
    at epoch 0 to ``end`` at the last epoch; ``step`` splits training into ``steps`` stages of
    equal length (to within an epoch), stage ``k`` at ``start + (end - start) * k / (steps - 1)``.
    A single epoch trains at ``start``.

    Args:
        epoch: the current epoch, in ``[0, epochs)``.
        epochs: the number of epochs, at least 1.
        start: temperature at the first epoch.
        end: temperature at the last epoch (unused by ``constant``).
        schedule: a name in :data:`TEMPERATURE_SCHEDULES`.
        steps: number of stages of the ``step`` schedule, at least 1.

    Raises:
        ValueError: unknown schedule, ``epochs < 1``, ``epoch`` outside ``[0, epochs)``, or
            ``steps < 1``.
    """
    if schedule not in TEMPERATURE_SCHEDULES:
        known = ", ".join(TEMPERATURE_SCHEDULES)
        raise ValueError(f"unknown temperature schedule {schedule!r}; known: {known}")
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}) with epochs >= 1, got {epoch}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if epochs == 1:
        return float(start)
    return float(TEMPERATURE_SCHEDULES[schedule](epoch, epochs, start, end, steps))


Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


class Distiller(Protocol):
    """How a batch's loss is made from the student's (and teacher's) outputs.

    The default is Hinton's loss on logits; :mod:`sweep.distillers` has the others. A
    distiller may train modules of its own (a hint regressor, a peer student): they are
    optimised with the student but are not part of it.
    """

    def extra_modules(self) -> list[nn.Module]:
        """Modules trained alongside the student (not exported, not counted)."""

    def model_changed(self, model: nn.Module) -> None:
        """The student's architecture changed (pruned, factorized); adapt to it."""

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
        """The batch's loss parts; ``loss`` is what is minimised."""


class LogitDistiller:
    """Hinton's distillation loss (plain cross-entropy without teacher logits)."""

    def extra_modules(self) -> list[nn.Module]:
        """None."""
        return []

    def model_changed(self, model: nn.Module) -> None:
        """Nothing depends on the student's shape."""

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
        """See :func:`~sweep.distill.distillation_loss`."""
        return distillation_loss(
            student_logits,
            teacher_logits,
            labels,
            alpha=alpha,
            temperature=temperature,
            label_smoothing=label_smoothing,
        )
