"""Distillation temperature schedules: the temperature of each epoch, looked up by name."""

from __future__ import annotations

import math
from collections.abc import Callable

# fn(epoch, epochs, start, end, steps) -> temperature, called with epochs >= 2.
TemperatureSchedule = Callable[[int, int, float, float, int], float]
TEMPERATURE_SCHEDULES: dict[str, TemperatureSchedule] = {}


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
