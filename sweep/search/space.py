"""Search-space YAML: parsed once into Optuna distributions and validated before trial 1.

A space file looks like::

    study: kd_small
    objective: val_acc
    budget: {max_params: 60000, count: dense}
    dataset: {name: food11, root: /data/food11, image_size: 224}
    teacher: {checkpoint: resnet18_teacher.ckpt}
    sampler: {name: tpe, seed: 0}          # tpe | random | nsga2
    early_stopping: {name: median}         # median | hyperband | none
    fixed: {epochs: 30, kd.temperature_schedule: linear}
    params:
      student.family: {type: categorical, choices: [dsconv, inverted_residual]}
      student.widths.0: {type: int, low: 16, high: 64, step: 8, when: {student.family: dsconv}}
      kd.alpha: {type: float, low: 0.1, high: 0.9}
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}

``params`` use Optuna's vocabulary. ``when`` makes a parameter conditional: it is sampled
only when every named earlier parameter (or fixed setting) takes one of the listed values.
This module knows YAML and Optuna, not torch or MLflow.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import (
    CategoricalDistribution,
)

from sweep.config import TrialConfig, build_config, canonical_key
from sweep.errors import ConfigError
from sweep.search.catalog import find_space
from sweep.search.fidelity import STAGE_KEYS, Fidelity, parse_fidelity
from sweep.search.params import ParamSpec, parse_params, resolve_key, suggest_value

# The metric each trial reports every epoch and the study optimises. Accuracy is what the
# front and the budget trade against; the best-epoch checkpoint is chosen by it too.
OBJECTIVES = {"val_acc": "maximize"}
SAMPLERS = ("tpe", "random", "nsga2")
EARLY_STOPPING = ("median", "hyperband", "none")
_SETTING_SECTIONS = (
    "dataset",
    "budget",
    "teacher",
    "train",
    "kd",
    "prune",
    "lowrank",
    "quantize",
)
_TOP_LEVEL = {
    "study",
    "objective",
    "budget",
    "dataset",
    "teacher",
    "train",
    "kd",
    "prune",
    "lowrank",
    "quantize",
    "sampler",
    "early_stopping",
    "fixed",
    "params",
    "max_infeasible_streak",
    "fidelity",
}
FINAL_SUFFIX = ".final"  # `sweep finalize`'s study beside the search study: <name>.final
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Well inside a file name's 255 bytes (lock and cache files add to it) and MLflow's
# 256-character experiment and registered-model names (a final study adds ".final").
MAX_STUDY_NAME = 100


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space."""

    source: str
    study_name: str
    objective: str
    sampler: dict[str, Any]
    early_stopping: dict[str, Any]
    settings: dict[str, Any]
    params: tuple[ParamSpec, ...]
    max_infeasible_streak: int
    document: dict[str, Any]
    fidelity: Fidelity = field(default_factory=Fidelity)
    stage: str = "search"  # which of ``fidelity``'s stages trial configs are built at

    def final(self) -> SearchSpace:
        """The space at its final fidelity, for ``sweep finalize``'s study ``<name>.final``.

        Its trials are queued, not sampled (a plain random sampler stands by), and train to
        the end: no early stopping.
        """
        if self.stage == "final":
            return self
        return replace(
            self,
            study_name=self.study_name + FINAL_SUFFIX,
            stage="final",
            sampler={"name": "random", "seed": 0},
            early_stopping={"name": "none"},
        )

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment of the study (a final study's runs join its search study's)."""
        return experiment_of(self.study_name) if self.stage == "final" else self.study_name

    @cached_property
    def defaults(self) -> TrialConfig:
        """The config every trial starts from: the space's settings, nothing searched."""
        return self.trial_config({})

    @property
    def direction(self) -> str:
        """``maximize`` or ``minimize``, following the objective."""
        return OBJECTIVES[self.objective]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample this trial's values, skipping parameters whose condition does not hold."""
        values: dict[str, Any] = dict(self.settings)
        chosen: dict[str, Any] = {}
        for spec in self.params:
            if spec.applies(values):
                value = suggest_value(trial, spec.name, spec.distribution)
                values[spec.name] = chosen[spec.name] = value
        return chosen

    def resolve(self, proposal: Mapping[str, Any]) -> dict[str, Any] | None:
        """The values a trial would take from a joint proposal (inactive ones dropped).

        Returns None when a parameter that applies is missing from the proposal.
        """
        values: dict[str, Any] = dict(self.settings)
        chosen: dict[str, Any] = {}
        for spec in self.params:
            if spec.applies(values):
                if spec.name not in proposal:
                    return None
                values[spec.name] = chosen[spec.name] = proposal[spec.name]
        return chosen

    def trial_config(self, chosen: Mapping[str, Any]) -> TrialConfig:
        """The frozen config of one trial: settings overlaid with the chosen values, at this
        space's stage of ``fidelity``."""
        settings = {**self.settings, **chosen}
        config = build_config(settings, self.source)
        overrides = self.fidelity.overrides(self.stage, config)
        if not overrides:
            return config
        return build_config({**settings, **overrides}, self.source)

    def corner_values(self, limit: int = 512, end: str = "low") -> Iterator[dict[str, Any]]:
        """Value sets at a corner of the space: every categorical combination, numeric
        parameters at ``low`` (the small corner, where the smallest model the space can build
        is) or at ``high``.
        """
        categorical = [
            p for p in self.params if isinstance(p.distribution, CategoricalDistribution)
        ]
        choice_lists = [p.distribution.choices for p in categorical]  # type: ignore[attr-defined]
        for combo in itertools.islice(itertools.product(*choice_lists), limit):
            fixed = dict(zip([p.name for p in categorical], combo, strict=True))
            values: dict[str, Any] = dict(self.settings)
            chosen: dict[str, Any] = {}
            for spec in self.params:
                if not spec.applies(values):
                    continue
                if spec.name in fixed:
                    value = fixed[spec.name]
                else:
                    value = getattr(spec.distribution, end)
                values[spec.name] = chosen[spec.name] = value
            yield chosen


def experiment_of(study_name: str) -> str:
    """The search study (and MLflow experiment) of a study name, final or not."""
    return study_name.removesuffix(FINAL_SUFFIX)


def load_space(
    path: str | Path, overrides: Sequence[str] = (), data_dir: str | None = None
) -> SearchSpace:
    """Read, override and validate a search-space YAML file.

    Args:
        path: the YAML file, or the name of a bundled space (:mod:`sweep.search.catalog`).
        overrides: ``key=value`` strings (``--set``), applied in order; values are YAML.
        data_dir: shorthand for ``--set dataset.root=DIR``.

    Returns:
        The validated SearchSpace.

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    found = find_space(path)
    source = str(found.path) if found.bundled else str(path)
    try:
        text = found.path.read_text()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError(
            source, where, f"not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if document is None:
        raise ConfigError(source, "", "the file is empty; `sweep spaces` lists complete spaces")
    if not isinstance(document, dict):
        raise ConfigError(source, "", "must be a mapping of settings")
    for override in overrides:
        apply_override(document, override, source)
    if data_dir is not None:
        apply_override(document, f"dataset.root={data_dir}", source)
    return parse_space(document, source, default_name=found.name)


def apply_override(document: dict[str, Any], override: str, source: str) -> None:
    """Apply one ``--set key=value`` to the YAML document in place.

    ``fixed.<key>`` sets one fixed setting (the key may hold dots); ``params.<name>.<attr>``
    sets an attribute of an existing parameter; other keys are nested YAML paths.
    """
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", override, "expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    head, _, rest = key.partition(".")
    if head not in ("params", "fidelity"):  # --set beats the file, stages included
        _yield_stages(document, rest if head == "fixed" else key)
    if head in ("fixed", "params") and rest:
        section = document.setdefault(head, {})
        if not isinstance(section, dict):
            raise ConfigError(source, head, "must be a mapping")
        if head == "params":
            for name in sorted(section, key=len, reverse=True):
                if rest.startswith(name + ".") and isinstance(section[name], dict):
                    section[name][rest[len(name) + 1 :]] = value
                    return
        section[rest] = value
        return
    target = document
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value


def _yield_stages(document: dict[str, Any], key: str) -> None:
    """Drop what ``fidelity:`` stages say of a setting that ``--set`` sets for every stage.

    ``--set fixed.epochs=1`` on a space whose search stage trains 15 epochs means 1 epoch,
    at every stage; ``--set fidelity.search.epochs=N`` changes one stage.
    """
    try:
        canonical = canonical_key(key)
    except ConfigError:  # not a setting: the override is checked when the space is parsed
        return
    stages = document.get("fidelity")
    if not isinstance(stages, dict):
        return
    for stage in stages.values():
        if isinstance(stage, dict):
            for name in [n for n in stage if STAGE_KEYS.get(n) == canonical]:
                del stage[name]


def parse_space(document: dict[str, Any], source: str, default_name: str = "study") -> SearchSpace:
    """Validate a YAML document (after overrides) and build the SearchSpace."""
    document = copy.deepcopy(document)
    for key in document:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                source, str(key), f"unknown key; expected one of {sorted(_TOP_LEVEL)}"
            )

    study_name = document.get("study", default_name)
    if not isinstance(study_name, str) or not _STUDY_NAME.match(study_name):
        raise ConfigError(source, "study", "must be a name of letters, digits, '_', '.', '-'")
    if len(study_name) > MAX_STUDY_NAME:
        raise ConfigError(
            source,
            "study",
            f"must be at most {MAX_STUDY_NAME} characters, got {len(study_name)} (it names "
            "files and an MLflow experiment)",
        )
    objective = document.get("objective", "val_acc")
    if objective not in OBJECTIVES:
        raise ConfigError(source, "objective", f"must be one of {sorted(OBJECTIVES)}")

    settings: dict[str, Any] = {}
    origin: dict[str, str] = {}  # canonical key -> where the YAML says it, for messages
    for section in _SETTING_SECTIONS:
        values = _mapping(document, section, source)
        for name, value in values.items():
            shown = f"{section}.{name}"
            settings[resolve_key(shown, source, shown)] = value
            origin[resolve_key(shown, source, shown)] = shown
    for name, value in _mapping(document, "fixed", source).items():
        canonical = resolve_key(str(name), source, f"fixed.{name}")
        settings[canonical] = value
        origin[canonical] = f"fixed.{name}"

    sampler = _named_section(document, "sampler", SAMPLERS, "tpe", source)
    early_stopping = _named_section(document, "early_stopping", EARLY_STOPPING, "median", source)
    streak = document.get("max_infeasible_streak", 100)
    if isinstance(streak, bool) or not isinstance(streak, int) or streak < 1:
        raise ConfigError(source, "max_infeasible_streak", "must be a positive integer")

    params = parse_params(_mapping(document, "params", source), settings, source)
    origin.update({p.name: f"params.{p.name}" for p in params})
    fidelity = parse_fidelity(document.get("fidelity"), source, (p.name for p in params))
    space = SearchSpace(
        source=source,
        study_name=study_name,
        objective=objective,
        sampler=sampler,
        early_stopping=early_stopping,
        settings=settings,
        params=params,
        max_infeasible_streak=streak,
        document=document,
        fidelity=fidelity,
    )
    # Every corner of the space (each choice, both ends of each range) must make a valid
    # config (types, ranges, choices) at both stages, before trial 1.
    try:
        for end in ("low", "high"):
            for chosen in space.corner_values(end=end):
                space.trial_config(chosen)
                space.final().trial_config(chosen)
    except ConfigError as exc:
        raise ConfigError(source, origin.get(exc.key, exc.key), exc.problem) from None
    return space


def _mapping(document: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(source, key, "must be a mapping")
    return value


def _named_section(
    document: Mapping[str, Any], key: str, names: Sequence[str], default: str, source: str
) -> dict[str, Any]:
    raw = document.get(key, default)
    section = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(section, dict):
        raise ConfigError(source, key, f"must be a name or a mapping with 'name' ({names})")
    section = dict(section)
    section.setdefault("name", default)
    if section["name"] not in names:
        raise ConfigError(source, f"{key}.name", f"must be one of {list(names)}")
    return section
