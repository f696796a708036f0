"""sweep.validation: pydantic checks a setting against its annotation, in sweep's words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from sweep.validation import Even, Invalid, Odd, check

Positive = Annotated[int, Field(ge=1)]


@pytest.mark.parametrize(
    ("hint", "value", "where", "says"),
    [
        (Positive, 0, (), "must be >= 1, got 0"),
        (Annotated[float, Field(gt=0.0)], 0, (), "must be > 0, got 0"),
        (Annotated[float, Field(ge=0.0, lt=1.0)], 1.0, (), "must be < 1, got 1.0"),
        (Annotated[float, Field(le=1.0)], 1.5, (), "must be <= 1, got 1.5"),
        (int, True, (), "must be an integer, got True"),  # strict: a bool is no number
        (int, 2.0, (), "must be an integer, got 2.0"),
        (float, "fast", (), "must be a number, got 'fast'"),
        (bool, "yes", (), "must be true or false, got 'yes'"),
        (str, 3, (), "must be a string, got 3"),
        (Literal["adamw", "sgd"], "adam", (), "must be one of ['adamw', 'sgd'], got 'adam'"),
        (Annotated[int, Odd], 4, (), "must be odd, got 4"),
        (Annotated[int, Even], 3, (), "must be even, got 3"),
        (Annotated[Sequence[Positive], Field(min_length=1)], [], (), "must be a non-empty list"),
        (Annotated[Sequence[Positive], Field(min_length=1)], 64, (), "must be a non-empty list"),
        (Sequence[Positive], [64, 0], (1,), "must be >= 1, got 0"),
    ],
)
def test_a_value_out_of_its_annotation_says_why_and_where(
    hint: Any, value: Any, where: tuple[int, ...], says: str
) -> None:
    with pytest.raises(Invalid) as invalid:
        check(hint, value)
    assert invalid.value.where == where
    assert invalid.value.says.startswith(says)


def test_an_element_names_its_own_value() -> None:
    with pytest.raises(Invalid) as invalid:
        check(Sequence[Annotated[int, Even]], [32, 33])
    assert (invalid.value.rule, invalid.value.got) == ("must be even", 33)


def test_a_fitting_value_comes_back_an_int_standing_for_a_float_as_a_float() -> None:
    assert check(Annotated[float, Field(gt=0.0)], 3) == 3.0
    assert isinstance(check(float, 3), float)
    assert check(Positive | None, None) is None
    assert check(Annotated[Sequence[Positive], Field(min_length=1)], (1, 2)) == (1, 2)
