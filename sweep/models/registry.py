"""The student registry: families looked up by name, and checks of their options.

A family is a builder ``fn(num_classes, **options) -> nn.Module`` registered with
:func:`register_student` (as timm's ``@register_model``). The builder's keyword parameters are
the family's options: their defaults are its defaults and their annotations
(``Annotated[int, Bound(ge=1)]``) the allowed values, so a search space is checked before
anything is built.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from torch import nn

from sweep.bounds import Bound
from sweep.config import resolve_options
from sweep.errors import ConfigError

Builder = Callable[..., nn.Module]


Count = Annotated[int, Bound(ge=1)]
Widths = Annotated[Sequence[int], Bound(ge=1)]
Kernel = Annotated[int, Bound(ge=1, odd=True)]  # odd, so padding k // 2 keeps "same" sizes
Rate = Annotated[float, Bound(ge=0.0, lt=1.0)]
Multiplier = Annotated[float, Bound(gt=0.0)]
Stride = Annotated[int, Bound(ge=1, le=4)]
Steps = Annotated[int, Bound(ge=0)]  # how many stages halve the feature map
EvenWidths = Annotated[Sequence[int], Bound(ge=2, even=True)]  # split into two halves

_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class _Option:
    """What one builder keyword accepts: ``kind`` None takes any value, a None default null."""

    default: Any
    kind: type | None
    is_list: bool
    bound: Bound | None


_FAMILIES: dict[str, tuple[Builder, dict[str, _Option]]] = {}


def _describe(hint: Any, default: Any) -> _Option:
    """Read an option's kind from its annotation, or from its default when it has none."""
    bound = None
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        bound = next((e for e in extras if isinstance(e, Bound)), None)
    is_list = typing.get_origin(hint) in (list, tuple, Sequence)
    if is_list:
        hint = (typing.get_args(hint) or (Any,))[0]
    elif hint not in _EXPECTED and default is not inspect.Parameter.empty:
        is_list = isinstance(default, (list, tuple))
        hint = type(default[0]) if is_list and default else type(default)
    return _Option(default, hint if hint in _EXPECTED else None, is_list, bound)


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


def _scalar_problem(opt: _Option, value: Any) -> str | None:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {
        bool: isinstance(value, bool),
        int: numeric and isinstance(value, int),
        float: numeric,
        str: isinstance(value, str),
    }
    if opt.kind in fits and not fits[opt.kind]:
        return f"must be {_EXPECTED[opt.kind]}, got {value!r}"
    return opt.bound.problem(value) if opt.bound and numeric else None


def _value_problem(opt: _Option, value: Any) -> tuple[int | None, str | None]:
    """Return (index of the bad list element or None, the problem or None)."""
    if value is None:
        return None, None if opt.default is None else "must be set, got null"
    if not opt.is_list:
        return None, _scalar_problem(opt, value)  # a list fails as "must be an integer, got [..]"
    if not isinstance(value, (list, tuple)) or not value:
        return None, f"must be a non-empty list, got {value!r}"
    for i, item in enumerate(value):
        problem = "is null" if item is None else _scalar_problem(opt, item)
        if problem:
            return i, f"element {i} {problem} in {list(value)!r}"
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
