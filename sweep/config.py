"""Frozen settings of one trial, and how dotted keys (``train.lr``) map onto them.

Precedence, lowest first: dataclass defaults < YAML ``fixed:`` < ``--set`` < trial suggestions.
Every setting has a canonical dotted name ``section.field``. A bare field name (``epochs``)
is accepted wherever it names exactly one field of the trial's own sections (``teacher.*``
always needs its prefix). ``student.*`` keys other than
``student.family`` are options of the student family, kept as written: ``student.widths.0``
sets the first element of the family's ``widths`` list when the student is built
(:func:`resolve_options`, against that family's defaults), so one space can search
per-stage widths of one family and a width multiplier of another.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import Field

from sweep import validation
from sweep.errors import ConfigError

# Ranges, declared beside each field and checked (by pydantic, :mod:`sweep.validation`) as a
# YAML value or --set is read.
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]

# The one list of ``kd.method`` names: sweep.distill registers a distiller (and a feature
# loss, where the method has one) under each, and refuses any other name.
KD_METHOD_NAMES = ("hinton", "fitnet", "rkd", "dml", "takd")
KDMethod = Literal[KD_METHOD_NAMES]  # type: ignore[valid-type]


def check_kd_method(name: str) -> None:
    """Refuse a name that is not in :data:`KD_METHOD_NAMES` (a registry's typo, a new method
    not yet listed there).

    Raises:
        ValueError: names the method and the known ones.
    """
    if name not in KD_METHOD_NAMES:
        known = ", ".join(KD_METHOD_NAMES)
        raise ValueError(f"{name!r} is not a kd.method of sweep.config (known: {known})")


@dataclass(frozen=True)
class StudentConfig:
    """Which student family to build and its family-specific options."""

    family: str = "dsconv"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KDConfig:
    """Knowledge-distillation settings: the method, and the Hinton loss on logits.

    ``method`` is one of :data:`KD_METHOD_NAMES`: ``hinton`` (logits),
    ``fitnet`` (a teacher stage's features through a 1x1 regressor), ``rkd`` (distances and
    angles between embeddings), ``dml`` (two students teach each other), ``takd`` (a teacher
    assistant of ``assistant_width`` is distilled first and teaches the student).
    """

    method: KDMethod = "hinton"
    alpha: Fraction = 0.5
    temperature_start: PositiveFloat = 4.0
    temperature_end: PositiveFloat = 4.0
    temperature_schedule: Literal["constant", "linear", "cosine", "step"] = "constant"
    temperature_steps: Positive = 2
    teacher_mode: Literal["cached", "online"] = "cached"
    views: Positive = 8
    # fitnet/rkd feature loss weight; None: the method's
    feature_weight: NonNegativeFloat | None = None
    assistant_width: Positive = 128  # takd: the assistant is a dsconv of widths w, 2w, 4w
    assistant_epochs: Positive | None = None  # takd: None trains it as long as the student


@dataclass(frozen=True)
class PruneConfig:
    """Pruning during training: ``steps`` prune steps, ``finetune_epochs`` apart.

    Step k runs at the start of epoch ``start_epoch + k * finetune_epochs``; the model keeps
    training (with the distillation loss) between and after the steps. ``structured`` removes
    channels, to ``rate`` of every channel group or, with ``target_params``, to the largest
    count within it; ``unstructured`` zeroes ``rate`` of all conv and linear weights (global
    magnitude), which lowers only the ``nonzero`` count.
    """

    method: Literal["none", "structured", "unstructured"] = "none"
    importance: Literal["magnitude", "bn_scale", "taylor"] = "magnitude"
    rate: Rate = 0.0
    target_params: Positive | None = None
    steps: Positive = 1
    finetune_epochs: Positive = 1
    start_epoch: NonNegative = 0
    round_to: Positive | None = None


@dataclass(frozen=True)
class LowRankConfig:
    """Truncated-SVD factorization of dense convs and linears at ``start_epoch`` (then fine-tuned).

    ``rank_ratio`` of each layer's full rank is kept; None leaves the model unfactorized.
    """

    rank_ratio: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    start_epoch: NonNegative = 0


@dataclass(frozen=True)
class QuantizeConfig:
    """Post-training static int8 of the trained student, calibrated on training batches."""

    int8: bool = False
    calibration_batches: Positive = 8


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for one training run."""

    epochs: Positive = 10
    batch_size: Positive = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-4
    momentum: Rate = 0.9
    lr_schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    label_smoothing: Rate = 0.0
    seed: NonNegative = 0
    device: str = "auto"
    amp: bool = True
    num_workers: NonNegative = 0
    compile: bool = False


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images are and how they are resized and augmented."""

    name: Literal["food11", "demo"] = "food11"
    root: str | None = None
    image_size: Annotated[int, Field(ge=8)] = 224
    resize: Annotated[int, Field(ge=8)] = 256  # at least image_size
    train_crop: Literal["center", "random", "random_resized"] = "random_resized"
    crop_scale_min: Annotated[float, Field(gt=0.0, le=1.0)] = 0.35
    hflip: bool = True
    color_jitter: NonNegativeFloat = 0.0
    cache: bool = True
    # A seeded, class-stratified share of the training images (a cheap search trial's
    # proxy; see ``fidelity:`` in a space). Validation is always whole.
    train_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


@dataclass(frozen=True)
class BudgetConfig:
    """The hard parameter budget."""

    max_params: Positive = 60_000
    count: Literal["dense", "nonzero"] = "dense"


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: a checkpoint to load, or how to train one from scratch."""

    checkpoint: str | None = None
    epochs: Positive = 30
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 5e-4
    batch_size: Positive = 64
    label_smoothing: Rate = 0.1


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs, resolved and frozen."""

    student: StudentConfig = field(default_factory=StudentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lowrank: LowRankConfig = field(default_factory=LowRankConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)


_SECTION_TYPES = {
    "student": StudentConfig,
    "kd": KDConfig,
    "train": TrainConfig,
    "dataset": DatasetConfig,
    "budget": BudgetConfig,
    "teacher": TeacherConfig,
    "prune": PruneConfig,
    "lowrank": LowRankConfig,
    "quantize": QuantizeConfig,
}


def _field_names(section: str) -> list[str]:
    return [f.name for f in fields(_SECTION_TYPES[section])]


def canonical_key(key: str, source: str = "settings") -> str:
    """Return the canonical dotted name of a setting.

    Args:
        key: ``section.field``, a bare unique field name, or a ``student.`` option path.
        source: where the key came from, for the error message.

    Returns:
        The canonical name, e.g. ``train.epochs`` for ``epochs``.

    Raises:
        ConfigError: the key names no setting, or a bare name is ambiguous.
    """
    head, _, rest = key.partition(".")
    if head in _SECTION_TYPES:
        if head == "student":
            if not rest:
                raise ConfigError(source, key, "name a student setting, e.g. student.family")
            return key
        if rest in _field_names(head):
            return key
        raise ConfigError(source, key, f"unknown setting; {head} has {_field_names(head)}")
    # Teacher settings always carry their prefix, so a bare ``epochs`` means the student's.
    owners = [
        s for s in _SECTION_TYPES if s not in ("student", "teacher") and key in _field_names(s)
    ]
    if len(owners) == 1:
        return f"{owners[0]}.{key}"
    if len(owners) > 1:
        choices = ", ".join(f"{s}.{key}" for s in owners)
        raise ConfigError(source, key, f"ambiguous setting; write one of {choices}")
    raise ConfigError(source, key, "unknown setting")


@functools.cache
def _field_types(section: str) -> dict[str, Any]:
    """The resolved annotations of a settings section, ranges (``Annotated``) included."""
    return typing.get_type_hints(_SECTION_TYPES[section], include_extras=True)


def _coerce(section: str, name: str, value: Any, source: str, key: str) -> Any:
    """Check a value against its field's type and range (ints may stand for floats)."""
    if value is None and not _optional(_field_types(section)[name]):
        raise ConfigError(source, key, "must not be empty")
    try:
        return validation.check(_field_types(section)[name], value)
    except validation.Invalid as invalid:
        raise ConfigError(source, key, invalid.says) from None


def _optional(hint: Any) -> bool:
    """``X | None``: the field may be empty."""
    return type(None) in typing.get_args(hint)


def check_setting(key: str, value: Any, source: str, shown: str) -> Any:
    """Check one setting's value against its field's type and range (``shown`` in messages).

    Raises:
        ConfigError: naming ``shown``.
    """
    section, _, name = canonical_key(key, source).partition(".")
    if section == "student":
        raise ConfigError(source, shown, "names a student option, not a setting")
    return _coerce(section, name, value, source, shown)


def resolve_options(
    defaults: Mapping[str, Any], options: Mapping[str, Any], source: str = "student"
) -> dict[str, Any]:
    """Apply a student's options, in order, over its family's defaults.

    Args:
        defaults: the family's option defaults.
        options: ``{name or dotted path: value}``; ``widths.1`` sets a list element.
        source: where the options came from, for error messages.

    Returns:
        Plain options with whole lists, ready for the family's builder.

    Raises:
        ConfigError: an index past the end of a list, or a path into a non-container.
    """
    resolved = copy.deepcopy(dict(defaults))
    for name, value in options.items():
        _set_option(
            resolved, str(name).split("."), copy.deepcopy(value), source, f"student.{name}"
        )
    return resolved


def _set_option(
    options: dict[str, Any], path: list[str], value: Any, source: str, key: str
) -> None:
    """Set ``options[path]``; integer parts index into an existing list.

    A list's length is structure (``widths`` has one entry per stage), so an index never
    grows it: ``student.widths.3`` needs ``student.widths`` with at least four entries.
    """
    target: Any = options
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(target, list):
            if not part.isdigit():
                raise ConfigError(source, key, f"{part!r} is not a list index")
            if int(part) >= len(target):
                list_key = "student." + ".".join(path[:i])
                raise ConfigError(
                    source,
                    key,
                    f"index {part} is past the end of {list_key} ({len(target)} entries)",
                )
            part_key: int | str = int(part)
        else:
            part_key = part
            if not last and (part not in target or target[part] is None):
                if path[i + 1].isdigit():
                    list_key = "student." + ".".join(path[: i + 1])
                    raise ConfigError(source, key, f"set the whole list {list_key} first")
                target[part] = {}
        if last:
            target[part_key] = value
            return
        if isinstance(target[part_key], tuple):
            target[part_key] = list(target[part_key])
        if not isinstance(target[part_key], (list, dict)):
            raise ConfigError(source, key, f"{part!r} holds a single value, not a list")
        target = target[part_key]


def build_config(settings: dict[str, Any], source: str = "settings") -> TrialConfig:
    """Build a frozen TrialConfig from dotted settings, applied in order over the defaults.

    Args:
        settings: ``{dotted key: value}``; later keys win over earlier ones.
        source: the file or flag the settings came from, for error messages.

    Returns:
        The resolved TrialConfig.

    Raises:
        ConfigError: a key names no setting or a value has the wrong type.
    """
    sections: dict[str, dict[str, Any]] = {s: {} for s in _SECTION_TYPES}
    options: dict[str, Any] = {}
    family = StudentConfig.family
    for key, value in copy.deepcopy(settings).items():
        canonical = canonical_key(key, source)
        section, _, name = canonical.partition(".")
        if section == "student":
            if name == "family":
                if not isinstance(value, str):
                    raise ConfigError(source, key, f"must be a family name, got {value!r}")
                family = value
            else:
                options[name] = value
            continue
        sections[section][name] = _coerce(section, name, value, source, key)
    built = {s: _SECTION_TYPES[s](**v) for s, v in sections.items() if s != "student"}
    config = TrialConfig(student=StudentConfig(family=family, options=options), **built)
    if config.dataset.resize < config.dataset.image_size:
        raise ConfigError(
            source,
            "dataset.resize",
            f"{config.dataset.resize} is smaller than dataset.image_size "
            f"{config.dataset.image_size}: crops are taken from the resized image",
        )
    return config


def flatten(config: TrialConfig) -> dict[str, Any]:
    """Return ``{canonical dotted key: value}`` for logging (lists joined as ``a.0``, ``a.1``)."""
    flat: dict[str, Any] = {"student.family": config.student.family}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        else:
            flat[prefix] = value

    walk("student", config.student.options)
    for section in _SECTION_TYPES:
        if section == "student":
            continue
        for name, value in dataclasses.asdict(getattr(config, section)).items():
            flat[f"{section}.{name}"] = value
    return flat


def to_dict(config: TrialConfig) -> dict[str, Any]:
    """Return the config as nested plain data (for ``config.yaml``)."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], source: str = "config") -> TrialConfig:
    """Rebuild a TrialConfig from :func:`to_dict` output (e.g. a logged ``config.yaml``)."""
    settings: dict[str, Any] = {}
    for section, values in data.items():
        if section not in _SECTION_TYPES or not isinstance(values, dict):
            raise ConfigError(source, section, "unknown section")
        if section == "student":
            settings["student.family"] = values.get("family", StudentConfig.family)
            for name, value in (values.get("options") or {}).items():
                settings[f"student.{name}"] = value
            continue
        for name, value in values.items():
            settings[f"{section}.{name}"] = value
    return build_config(settings, source)
