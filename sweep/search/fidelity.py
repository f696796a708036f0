"""How cheap a search trial is, apart from how a final model is trained (``fidelity:``).

A space may say::

    fidelity:
      search: {epochs: 15, image_size: 112, train_fraction: 0.5}
      final:  {epochs: 150, image_size: 224, seeds: 3}

The space's own settings (``fixed:``, ``dataset:``...) are the reference; each stage
overrides the named ones: ``epochs`` (``train.epochs``), ``image_size`` and ``resize``
(``dataset.*``; without ``resize`` it scales with the image size) and ``train_fraction``
(``dataset.train_fraction``, a seeded stratified share of the training images). Schedules
counted in epochs (pruning steps, low-rank, a TAKD assistant) scale with the epochs, so a
prune step at epoch 30 of 60 comes at epoch 8 of 15. ``final.seeds`` is how many seeds
``sweep finalize`` trains each architecture with. Nothing here changes a student's
architecture, so its parameter count, and the budget check, is the same at both stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sweep.config import TrialConfig, check_setting
from sweep.errors import ConfigError

STAGES = ("search", "final")
DEFAULT_SEEDS = 3
# A stage's names for the settings it may set.
STAGE_KEYS = {
    "epochs": "train.epochs",
    "image_size": "dataset.image_size",
    "resize": "dataset.resize",
    "train_fraction": "dataset.train_fraction",
}


@dataclass(frozen=True)
class Fidelity:
    """The two stages' overrides (canonical key -> value) and the final stage's seeds."""

    search: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    seeds: int = DEFAULT_SEEDS

    def overrides(self, stage: str, base: TrialConfig) -> dict[str, Any]:
        """The settings a stage changes in a trial's config ``base`` (the reference)."""
        values = self.search if stage == "search" else self.final
        changed: dict[str, Any] = dict(values)
        epochs = values.get("train.epochs")
        if epochs is not None and epochs != base.train.epochs:
            changed.update(_scaled_schedule(base, epochs / base.train.epochs))
        size = values.get("dataset.image_size")
        if size is not None and "dataset.resize" not in values:
            scaled = round(base.dataset.resize * size / base.dataset.image_size)
            changed["dataset.resize"] = max(size, scaled)
        return changed


def _scaled_schedule(base: TrialConfig, ratio: float) -> dict[str, Any]:
    """Epoch-counted schedule settings at ``ratio`` times the reference's epochs."""
    scaled: dict[str, Any] = {
        "prune.start_epoch": round(base.prune.start_epoch * ratio),
        "prune.finetune_epochs": max(1, round(base.prune.finetune_epochs * ratio)),
        "lowrank.start_epoch": round(base.lowrank.start_epoch * ratio),
    }
    if base.kd.assistant_epochs is not None:
        scaled["kd.assistant_epochs"] = max(1, round(base.kd.assistant_epochs * ratio))
    return scaled


def parse_fidelity(raw: Any, source: str, searched: Iterable[str]) -> Fidelity:
    """Validate a space's ``fidelity:`` section.

    Args:
        raw: the section as read from YAML (None: no section, both stages as written).
        source: the space file, for messages.
        searched: canonical names of the searched parameters (a stage may not set one).

    Raises:
        ConfigError: naming ``fidelity.<stage>.<key>``.
    """
    if raw is None:
        return Fidelity()
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "fidelity", "must be a mapping with search: and final:")
    for stage in raw:
        if stage not in STAGES:
            raise ConfigError(source, f"fidelity.{stage}", f"unknown stage; expected {STAGES}")
    searched = set(searched)
    stages: dict[str, dict[str, Any]] = {}
    seeds = DEFAULT_SEEDS
    for stage in STAGES:
        section = raw.get(stage) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(source, f"fidelity.{stage}", "must be a mapping")
        values: dict[str, Any] = {}
        for name, value in section.items():
            shown = f"fidelity.{stage}.{name}"
            if stage == "final" and name == "seeds":
                seeds = check_seeds(value, source, shown)
                continue
            if name not in STAGE_KEYS:
                expected = sorted(STAGE_KEYS) + (["seeds"] if stage == "final" else [])
                raise ConfigError(source, shown, f"unknown key; expected one of {expected}")
            key = STAGE_KEYS[name]
            if key in searched:
                raise ConfigError(
                    source, shown, f"{key} is searched in params; a stage cannot also set it"
                )
            values[key] = check_setting(key, value, source, shown)
        resize, size = values.get("dataset.resize"), values.get("dataset.image_size")
        if resize is not None and size is not None and resize < size:
            raise ConfigError(
                source, f"fidelity.{stage}.resize", f"{resize} is smaller than image_size {size}"
            )
        stages[stage] = values
    return Fidelity(stages["search"], stages["final"], seeds)


def check_seeds(value: Any, source: str, shown: str) -> int:
    """A seed count: a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(source, shown, f"must be a positive integer, got {value!r}")
    return value


def describe(cfg: TrialConfig) -> str:
    """A stage's fidelity in words: ``15 epochs at 112 px on 50% of the training images``."""
    text = f"{cfg.train.epochs} epochs at {cfg.dataset.image_size} px"
    if cfg.dataset.train_fraction < 1.0:
        text += f" on {cfg.dataset.train_fraction:.0%} of the training images"
    return text
