"""Student architectures, looked up by family name, and checks of their options.

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

from torch import Tensor, nn

from sweep.config import resolve_options
from sweep.errors import ConfigError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class Bound:
    """Limits on an option's value, or on every element of a list option."""

    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    odd: bool = False

    def problem(self, value: float) -> str | None:
        """Return why ``value`` is out of range, or None when it is allowed."""
        if self.ge is not None and value < self.ge:
            return f"must be >= {self.ge:g}, got {value!r}"
        if self.gt is not None and value <= self.gt:
            return f"must be > {self.gt:g}, got {value!r}"
        if self.lt is not None and value >= self.lt:
            return f"must be < {self.lt:g}, got {value!r}"
        return f"must be odd, got {value!r}" if self.odd and value % 2 != 1 else None


Count = Annotated[int, Bound(ge=1)]
Widths = Annotated[Sequence[int], Bound(ge=1)]
Kernel = Annotated[int, Bound(ge=1, odd=True)]  # odd, so padding k // 2 keeps "same" sizes
Rate = Annotated[float, Bound(ge=0.0, lt=1.0)]
Multiplier = Annotated[float, Bound(gt=0.0)]

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
    resolved = resolve_options(student_option_defaults(family), options, source)
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


# make_block(c_in, c_out, stride) -> one block; a stage is (width, first stride, blocks).
BlockFactory = Callable[[int, int, int], nn.Module]


class StudentNet(nn.Module):
    """``features`` (stem, then one Sequential per stage), global average pool, ``classifier``.

    ``features[0]`` is the stem and ``features[i]`` ends stage i (taps for feature distillation).
    """

    def __init__(
        self,
        stem: nn.Module,
        stem_width: int,
        stages: Sequence[tuple[int, int, int]],
        make_block: BlockFactory,
        num_classes: int,
        dropout: float,
    ):
        super().__init__()
        layers, c_in = [stem], stem_width
        for width, stride, blocks in stages:  # only a stage's first block changes the size
            layers.append(
                nn.Sequential(
                    *(
                        make_block(c_in if i == 0 else width, width, stride if i == 0 else 1)
                        for i in range(blocks)
                    )
                )
            )
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Dropout stays even at p=0 so the Linear is always ``classifier.1``: checkpoints load
        # whatever dropout the trial used.
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))
        # torchvision's MobileNet initialisation, as these are MobileNet's blocks. Skipped on the
        # meta device (the budget count), which holds no values and whose normal_ would cost a
        # one-off ~1 s import of torch's meta kernels.
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear) and not m.weight.is_meta:
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _conv_bn(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    layers = [conv, nn.BatchNorm2d(c_out)]  # BN's shift makes a conv bias redundant
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


@register_student("dsconv")
def dsconv(
    num_classes: int,
    stem: Count = 32,
    # The 1x1 convs dominate (c_in * c_out), so the last stage costs most: these widths give
    # 50,123 parameters at 11 classes, leaving ~10k of the 60k budget for a search to widen a
    # stage. 3 stages (+ the stem) reach 1/16 of the input: 14x14 at 224 px, 2x2 at 32 px.
    widths: Widths = (64, 128, 256),
    blocks_per_stage: Count = 1,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
) -> StudentNet:
    """MobileNet-v1-like plain stack: 3x3 stride-2 stem, then depthwise-separable blocks.

    Args:
        num_classes: size of the logits.
        stem: output channels of the stem conv.
        widths: output channels of each stage; the list's length is the number of stages.
        blocks_per_stage: blocks per stage; the first has stride 2, the rest stride 1.
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        depthwise = _conv_bn(c_in, c_in, kernel_size, stride, groups=c_in)
        return nn.Sequential(depthwise, _conv_bn(c_in, c_out, 1))

    stages = [(width, 2, blocks_per_stage) for width in widths]
    return StudentNet(_conv_bn(3, stem, 3, 2), stem, stages, block, num_classes, dropout)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise, linear 1x1 project, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, kernel_size: int):
        super().__init__()
        hidden = c_in * expansion
        expand = [_conv_bn(c_in, hidden, 1, act=nn.ReLU6)] if expansion > 1 else []
        self.block = nn.Sequential(
            *expand,
            _conv_bn(hidden, hidden, kernel_size, stride, groups=hidden, act=nn.ReLU6),
            _conv_bn(hidden, c_out, 1, act=None),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.residual else out


# MobileNetV2's first five stage widths; with the stride-2 stem, four stride-2 stages bring a
# 224-px input to 7x7 (and a 32-px one to 1x1, where global pooling still works).
_IR_WIDTHS = (16, 24, 32, 64, 96)
_IR_STRIDES = (1, 2, 2, 2, 2)


def _round_width(width: float, divisor: int = 8) -> int:
    """MobileNet's rounding: nearest multiple of ``divisor`` (at least it), never 10% below."""
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


@register_student("inverted_residual")
def inverted_residual(
    num_classes: int,
    # 0.5 gives stage widths 8, 16, 16, 32, 48 and 23,483 parameters at 11 classes, so
    # width_mult, expansion and depth each have room to grow within the 60k budget.
    width_mult: Multiplier = 0.5,
    expansion: Count = 4,
    depth: Count = 1,
    stem: Count = 16,
    kernel_size: Kernel = 3,
    dropout: Rate = 0.0,
) -> StudentNet:
    """MobileNetV2-style student: 3x3 stride-2 stem, then five stages of inverted residuals.

    Args:
        num_classes: size of the logits.
        width_mult: scales the base widths (16, 24, 32, 64, 96), rounded to multiples of 8.
        expansion: hidden width of each block as a multiple of its input width.
        depth: blocks per stage; only a stage's first block may have stride 2.
        stem: output channels of the stem conv (not scaled by ``width_mult``).
        kernel_size: the depthwise kernel.
        dropout: dropout before the classifier.
    """

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        return InvertedResidual(c_in, c_out, stride, expansion, kernel_size)

    stages = [
        (_round_width(base * width_mult), stride, depth)
        for base, stride in zip(_IR_WIDTHS, _IR_STRIDES, strict=True)
    ]
    stem_layer = _conv_bn(3, stem, 3, 2, act=nn.ReLU6)
    return StudentNet(stem_layer, stem, stages, block, num_classes, dropout)
