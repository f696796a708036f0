"""A setting's type and range, declared beside it and checked by pydantic.

The settings (:mod:`sweep.config`) and the student families' options
(:mod:`sweep.models.registry`) annotate each field once, ``Annotated[int, Field(ge=1)]``;
:func:`problem` checks a value read from YAML or ``--set`` against that annotation with a
strict pydantic ``TypeAdapter`` (an int may stand for a float; nothing else is converted) and
says what is wrong in sweep's words, for the one-line error that names the file and key.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

_STRICT = ConfigDict(strict=True)


def _odd(value: int) -> int:
    if value % 2 != 1:
        raise PydanticCustomError("odd", "must be odd")
    return value


def _even(value: int) -> int:
    if value % 2 != 0:
        raise PydanticCustomError("even", "must be even")
    return value


Odd = AfterValidator(_odd)
Even = AfterValidator(_even)

# What a failed check means, by pydantic's error type; ``{...}`` names the error's context.
_SAYS = {
    "greater_than_equal": "must be >= {ge:g}",
    "greater_than": "must be > {gt:g}",
    "less_than": "must be < {lt:g}",
    "less_than_equal": "must be <= {le:g}",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "literal_error": "must be one of [{expected}]",
    "list_type": "must be a non-empty list",
    "too_short": "must be a non-empty list",
    "is_instance_of": "must be a non-empty list",  # a number where a Sequence goes
    "sequence_str": "must be a non-empty list",
}


@functools.cache
def _adapter(hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(hint, config=_STRICT)


def _words(error: ErrorDetails) -> str:
    says = _SAYS.get(error["type"])
    context = dict(error.get("ctx", {}))
    if "expected" in context:  # "'a', 'b' or 'c'", as a list is written
        context["expected"] = context["expected"].replace(" or ", ", ")
    return says.format(**context) if says else error["msg"]


class Invalid(ValueError):
    """A value that does not fit its annotation: where in it, the rule it broke, what came."""

    def __init__(self, where: tuple[int | str, ...], rule: str, got: Any) -> None:
        super().__init__(f"{rule}, got {got!r}")  # "must be >= 1, got 0"
        self.where = where  # (1,) for a list's second element, () for the value itself
        self.rule = rule  # "must be >= 1"
        self.got = got  # the faulty value (the element, for a list's element)

    @property
    def says(self) -> str:
        """The whole problem: ``must be >= 1, got 0``."""
        return str(self)


def check(hint: Any, value: Any) -> Any:
    """Return ``value`` as the annotation ``hint`` holds it (an int in a float field becomes
    a float).

    Raises:
        Invalid: the first fault pydantic found, in sweep's words.
    """
    try:
        return _adapter(hint).validate_python(value)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        raise Invalid(tuple(error["loc"]), _words(error), error["input"]) from None
