"""The ``params:`` of a search space: Optuna distributions, conditions and sampling.

Each entry speaks Optuna's vocabulary (``float``/``int``/``categorical``, ``low``, ``high``,
``log``, ``step``, ``choices``) and may carry ``when:``, which makes it apply only when
earlier parameters or fixed settings take the listed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweep.config import canonical_key
from sweep.errors import ConfigError

_PARAM_KEYS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}


@dataclass(frozen=True)
class ParamSpec:
    """One searched setting: its canonical name, Optuna distribution and condition."""

    name: str
    distribution: BaseDistribution
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition holds for the values chosen so far."""
        return all(values.get(key) in allowed for key, allowed in self.when.items())


def suggest_value(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Sample through Optuna's public suggest API, which records the distribution."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    d: Any = distribution
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


def resolve_key(key: str, source: str, shown: str) -> str:
    """The canonical setting name of a YAML key; errors name the key as the YAML writes it."""
    try:
        return canonical_key(key, source)
    except ConfigError as exc:
        raise ConfigError(source, shown, exc.problem) from None


def _number(spec: Mapping[str, Any], attr: str, kind: str, source: str, key: str) -> Any:
    value = spec.get(attr)
    ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    if value is None or isinstance(value, bool) or not ok:
        raise ConfigError(
            source, f"{key}.{attr}", f"must be {'an integer' if kind == 'int' else 'a number'}"
        )
    return value


def parse_params(
    raw: Mapping[str, Any], settings: Mapping[str, Any], source: str
) -> tuple[ParamSpec, ...]:
    specs: list[ParamSpec] = []
    known: set[str] = set(settings)
    for name, spec in raw.items():
        key = f"params.{name}"
        canonical = resolve_key(str(name), source, key)
        if not isinstance(spec, dict):
            raise ConfigError(source, key, "must be a mapping with 'type'")
        kind = spec.get("type")
        if kind not in _PARAM_KEYS:
            raise ConfigError(source, f"{key}.type", f"must be one of {sorted(_PARAM_KEYS)}")
        for attr in spec:
            if attr not in _PARAM_KEYS[kind]:
                raise ConfigError(source, f"{key}.{attr}", f"unknown key for a {kind} parameter")
        distribution = _distribution(spec, kind, source, key)
        when = _parse_when(spec.get("when") or {}, known, source, key)
        specs.append(ParamSpec(canonical, distribution, when))
        known.add(canonical)
    return tuple(specs)


def _distribution(spec: Mapping[str, Any], kind: str, source: str, key: str) -> BaseDistribution:
    """Build the entry's Optuna distribution; Optuna's constructor checks the ranges (low <=
    high, low > 0 with log, step > 0 and not with log, scalar choices) and says why."""
    try:
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(source, f"{key}.choices", "must be a non-empty list")
            return CategoricalDistribution(choices)
        low = _number(spec, "low", kind, source, key)
        high = _number(spec, "high", kind, source, key)
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(source, f"{key}.log", "must be true or false")
        step = spec.get("step")
        if step is not None:
            _number(spec, "step", kind, source, key)
        if kind == "int":
            return IntDistribution(low, high, log=log, step=1 if step is None else step)
        return FloatDistribution(float(low), float(high), log=log, step=step)
    except ValueError as refused:
        raise ConfigError(source, key, str(refused)) from None


def _parse_when(raw: Any, known: set[str], source: str, key: str) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(source, f"{key}.when", "must map a parameter to a value or a list")
    when: dict[str, tuple[Any, ...]] = {}
    for other, allowed in raw.items():
        canonical = resolve_key(str(other), source, f"{key}.when.{other}")
        if canonical not in known:
            raise ConfigError(
                source, f"{key}.when.{other}", "names no earlier parameter or fixed setting"
            )
        when[canonical] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return when
