"""The student registry: families looked up by name, and checks of their options.

A family is a builder ``fn(num_classes, **options) -> nn.Module`` registered with
:func:`register_student` (as timm's ``@register_model``). The builder's keyword parameters are
the family's options: their defaults are its defaults and their annotations
(``Annotated[int, Field(ge=1)]``, checked by pydantic) the allowed values, so a search space is
checked before anything is built.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field
from torch import nn

from sweep import validation
from sweep.config import resolve_options
from sweep.errors import ConfigError

Builder = Callable[..., nn.Module]


Count = Annotated[int, Field(ge=1)]
Widths = Annotated[Sequence[Count], Field(min_length=1)]
Kernel = Annotated[int, Field(ge=1), validation.Odd]  # odd, so padding k // 2 keeps "same" sizes
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
Multiplier = Annotated[float, Field(gt=0.0)]
Stride = Annotated[int, Field(ge=1, le=4)]
Steps = Annotated[int, Field(ge=0)]  # how many stages halve the feature map
EvenWidth = Annotated[int, Field(ge=2), validation.Even]  # split into two halves
EvenWidths = Annotated[Sequence[EvenWidth], Field(min_length=1)]


@dataclass(frozen=True)
class _Option:
    """What one builder keyword accepts: ``hint`` None takes any value, a None default null."""

    default: Any
    hint: Any


_FAMILIES: dict[str, tuple[Builder, dict[str, _Option]]] = {}


def _describe(hint: Any, default: Any) -> _Option:
    """Read an option's type from its annotation, or from its default when it has none."""
    if hint is Any and default is not inspect.Parameter.empty and default is not None:
        if isinstance(default, (list, tuple)):
            hint = Annotated[Sequence[type(default[0])], Field(min_length=1)] if default else Any
        else:
            hint = type(default)
    return _Option(default, None if hint is Any else hint)


def register_student(name: str) -> Callable[[Builder], Builder]:
    """Return a decorator registering a builder ``fn(num_classes, **options)`` as ``name``.

    Raises:
        ValueError: ``name`` is already registered (a silent override would change old runs).
    """

    def decorator(builder: Builder) -> Builder:
        if name in _FAMILIES:
            raise ValueError(f"student family {name!r} is already registered")
        try:
            hints = typing.get_type_hints(builder, include_extras=True)
        except (NameError, TypeError):  # annotations naming a local type: fall back to defaults
            hints = {}
        params = list(inspect.signature(builder).parameters.values())[1:]  # [0] is num_classes
        _FAMILIES[name] = (
            builder,
            {
                p.name: _describe(hints.get(p.name, Any), p.default)
                for p in params
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            },
        )
        return builder

    return decorator


def student_families() -> list[str]:
    """Return the registered family names, sorted."""
    return sorted(_FAMILIES)


def _options_of(family: str, source: str) -> dict[str, _Option]:
    if family not in _FAMILIES:
        known = ", ".join(student_families())
        raise ConfigError(source, "student.family", f"unknown family {family!r}; known: {known}")
    return _FAMILIES[family][1]


def student_option_defaults(family: str) -> dict[str, Any]:
    """Return ``{option: default}`` from a family builder's signature, tuples as lists.

    Raises:
        ConfigError: ``family`` is not registered.
    """
    return {
        name: list(opt.default) if isinstance(opt.default, tuple) else opt.default
        for name, opt in _options_of(family, "student").items()
        if opt.default is not inspect.Parameter.empty
    }


def _value_problem(opt: _Option, value: Any) -> tuple[int | None, str | None]:
    """Return (index of the bad list element or None, the problem or None)."""
    if value is None:
        return None, None if opt.default is None else "must be set, got null"
    if opt.hint is None:
        return None, None
    try:
        validation.check(opt.hint, value)
    except validation.Invalid as invalid:
        if not invalid.where:  # a list where one number goes: "must be an integer, got [..]"
            return None, invalid.says
        index = int(invalid.where[0])
        problem = "is null" if invalid.got is None else invalid.rule
        return index, f"element {index} {problem} in {list(value)!r}"
    return None, None


def _resolve(family: str, options: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check options (``widths.1`` sets a list element) and apply them over the defaults."""
    spec = _options_of(family, source)
    for key in options:
        if str(key).split(".")[0] not in spec:
            known = ", ".join(spec) or "none"
            raise ConfigError(
                source, f"student.{key}", f"unknown option of family {family!r}; it has: {known}"
            )
    defaults = student_option_defaults(family)
    resolved = resolve_options(defaults, options, source)
    for name, opt in spec.items():
        if name not in resolved:
            raise ConfigError(source, f"student.{name}", f"family {family!r} needs this option")
        index, problem = _value_problem(opt, resolved[name])
        if problem:
            # Name the element's own key when the search set it (student.widths.1).
            key = f"{name}.{index}" if f"{name}.{index}" in options else name
            raise ConfigError(source, f"student.{key}", problem)
    return resolved


def validate_student_options(
    family: str, options: Mapping[str, Any], source: str = "student"
) -> dict[str, Any]:
    """Check a family name and its options without building anything.

    Args:
        family: the student family.
        options: option values as written in YAML or set by a search: lists may be lists or
            tuples, and ``widths.1`` sets one element of the family's ``widths``.
        source: the file or flag the options came from, for the error message.

    Returns:
        Every option of the family, defaults filled in and list elements applied.

    Raises:
        ConfigError: unknown family (key ``student.family``), or an unknown option, a value of
            the wrong type or out of range, or a missing required option (key ``student.<name>``,
            or ``student.<name>.<i>`` for a list element set on its own).
    """
    return _resolve(family, options, source)


def create_student(
    family: str, num_classes: int, options: Mapping[str, Any] | None = None
) -> nn.Module:
    """Build a student of a registered family; options it is not given keep their defaults.

    Construction draws from torch's global RNG only, so it is deterministic given the seed.

    Raises:
        ConfigError: see :func:`validate_student_options`.
    """
    resolved = _resolve(family, options or {}, "student")
    return _FAMILIES[family][0](num_classes, **resolved)
