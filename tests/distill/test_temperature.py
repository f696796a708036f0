"""Temperature schedules: values at hand-computed epochs, ends, registry."""

from __future__ import annotations

import pytest

from sweep.distill import temperature as distill
from sweep.distill.temperature import (
    TEMPERATURE_SCHEDULES,
    register_temperature_schedule,
    temperature_at,
)


@pytest.mark.parametrize(
    ("schedule", "epochs", "steps", "expected"),
    [
        ("constant", 11, 2, {0: 4.0, 5: 4.0, 10: 4.0}),
        ("linear", 11, 2, {0: 4.0, 1: 3.7, 5: 2.5, 10: 1.0}),
        # 4 - 3 * (1 - cos(pi * e / 10)) / 2
        ("cosine", 11, 2, {0: 4.0, 2: 3.7135255, 5: 2.5, 8: 1.2864745, 10: 1.0}),
        ("step", 10, 2, {0: 4.0, 4: 4.0, 5: 1.0, 9: 1.0}),
        ("step", 12, 4, {0: 4.0, 2: 4.0, 3: 3.0, 6: 2.0, 8: 2.0, 9: 1.0, 11: 1.0}),
        ("step", 10, 3, {0: 4.0, 3: 4.0, 4: 2.5, 6: 2.5, 7: 1.0, 9: 1.0}),
        ("step", 10, 1, {0: 4.0, 9: 4.0}),
    ],
)
def test_temperature_schedules(
    schedule: str, epochs: int, steps: int, expected: dict[int, float]
) -> None:
    got = {e: temperature_at(e, epochs, 4.0, 1.0, schedule, steps) for e in expected}
    assert got == pytest.approx(expected, abs=1e-7)


def test_first_and_last_epochs_are_exact() -> None:
    for schedule in ("linear", "cosine", "step"):
        assert temperature_at(0, 7, 3.3, 1.1, schedule) == 3.3
        assert temperature_at(6, 7, 3.3, 1.1, schedule) == 1.1


def test_single_epoch_trains_at_start() -> None:
    for schedule in TEMPERATURE_SCHEDULES:
        assert temperature_at(0, 1, 4.0, 1.0, schedule) == 4.0


def test_unknown_schedule_and_bad_epochs() -> None:
    with pytest.raises(ValueError, match="constant, linear, cosine, step"):
        temperature_at(0, 10, 4.0, 1.0, "exponential")
    with pytest.raises(ValueError, match="epoch"):
        temperature_at(10, 10, 4.0, 1.0, "linear")
    with pytest.raises(ValueError, match="steps"):
        temperature_at(0, 10, 4.0, 1.0, "step", steps=0)


def test_register_temperature_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distill, "TEMPERATURE_SCHEDULES", dict(TEMPERATURE_SCHEDULES))

    @register_temperature_schedule("halfway")
    def halfway(epoch: int, epochs: int, start: float, end: float, steps: int) -> float:
        return (start + end) / 2

    assert temperature_at(3, 10, 4.0, 1.0, "halfway") == 2.5
    with pytest.raises(ValueError, match="already registered"):
        register_temperature_schedule("halfway")(halfway)
