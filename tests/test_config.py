"""Tests of sweep.config: dotted keys, precedence, coercion and round trips."""

from __future__ import annotations

import pytest

from sweep.config import (
    build_config,
    canonical_key,
    flatten,
    from_dict,
    resolve_options,
    to_dict,
)
from sweep.errors import ConfigError


def test_bare_names_resolve_to_the_trials_own_section() -> None:
    assert canonical_key("epochs") == "train.epochs"
    assert canonical_key("alpha") == "kd.alpha"
    assert canonical_key("teacher.epochs") == "teacher.epochs"
    assert canonical_key("student.widths.0") == "student.widths.0"


def test_unknown_and_misplaced_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="f.yaml: train.nope: unknown setting"):
        canonical_key("train.nope", "f.yaml")
    with pytest.raises(ConfigError, match="wobble: unknown setting"):
        canonical_key("wobble")


def test_later_settings_win_and_values_are_coerced() -> None:
    cfg = build_config({"epochs": 3, "train.epochs": 5, "lr": 1, "kd.alpha": 0.25})
    assert cfg.train.epochs == 5
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.kd.alpha == 0.25


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 2.5}, "space.yaml: epochs: must be an integer"),
        ({"epochs": True}, "space.yaml: epochs: must be an integer"),
        ({"lr": "fast"}, "space.yaml: lr: must be a number"),
        ({"optimizer": "adam"}, "space.yaml: optimizer: must be one of"),
        ({"amp": "yes"}, "space.yaml: amp: must be true or false"),
        ({"student.family": 3}, "student.family: must be a family name"),
    ],
)
def test_wrong_types_name_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(settings, "space.yaml")


def test_student_options_are_kept_as_written_and_resolved_over_defaults() -> None:
    widths = [32, 64, 128]
    cfg = build_config({"student.widths": widths, "student.widths.1": 96})
    assert cfg.student.options == {"widths": [32, 64, 128], "widths.1": 96}
    resolved = resolve_options({"widths": (8, 8, 8), "stem": 16}, cfg.student.options)
    assert resolved == {"widths": [32, 96, 128], "stem": 16}
    assert widths == [32, 64, 128]


def test_list_index_applies_to_the_family_default() -> None:
    defaults = {"widths": (64, 128, 256)}
    assert resolve_options(defaults, {"widths.0": 16}) == {"widths": [16, 128, 256]}
    assert defaults == {"widths": (64, 128, 256)}
    with pytest.raises(ConfigError, match="student.widths.3: index 3 is past the end"):
        resolve_options(defaults, {"widths.3": 4}, "space.yaml")
    with pytest.raises(ConfigError, match="student.stem.0: 'stem' holds a single value"):
        resolve_options({"stem": 16}, {"stem.0": 4})


def test_flatten_and_round_trip() -> None:
    cfg = build_config({"student.family": "dsconv", "student.widths": [8, 16], "epochs": 2})
    flat = flatten(cfg)
    assert flat["student.widths.0"] == 8 and flat["student.widths.1"] == 16
    assert flat["train.epochs"] == 2 and flat["budget.max_params"] == 60_000
    assert from_dict(to_dict(cfg)) == cfg
