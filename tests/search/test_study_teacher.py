"""Whether a study needs its teacher: decided from the space before anything is trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sweep.search.space import parse_space
from sweep.search.study_teacher import _may_distil, study_teacher


def space(fixed: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    document = {"dataset": {"name": "demo"}, "fixed": fixed, "params": params or {}}
    return parse_space(document, "space.yaml")


@pytest.mark.parametrize(
    ("fixed", "params", "needed"),
    [
        ({"kd.alpha": 0.5}, None, True),
        ({"kd.alpha": 0.0}, None, False),  # labels alone
        ({"kd.alpha": 0.0}, {"kd.alpha": {"type": "float", "low": 0, "high": 1}}, True),
        ({"kd.alpha": 0.0, "kd.method": "fitnet"}, None, True),  # features need the teacher
        ({"kd.alpha": 0.0, "kd.method": "rkd"}, None, True),
        ({"kd.method": "takd"}, None, True),  # the assistant learns from it
        ({"kd.method": "dml"}, None, False),  # a peer teaches
        (
            {"kd.method": "dml"},
            {"kd.method": {"type": "categorical", "choices": ["dml", "hinton"]}},
            True,
        ),
    ],
)
def test_which_spaces_need_a_teacher(
    fixed: dict[str, Any], params: dict[str, Any] | None, needed: bool
) -> None:
    assert _may_distil(space(fixed, params)) is needed


def test_a_space_without_distillation_trains_no_teacher(tmp_path: Path) -> None:
    assert study_teacher(space({"kd.method": "dml"}), 10, tmp_path) == (None, None)
    assert not (tmp_path / "teachers").exists()
