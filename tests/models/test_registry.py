"""Student families: shapes, parameter counts, option checks and the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.config import build_config
from sweep.errors import ConfigError
from sweep.models import registry as students
from sweep.models.registry import (
    create_student,
    register_student,
    student_families,
    student_option_defaults,
    validate_student_options,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_option_defaults_come_from_the_signature() -> None:
    assert student_option_defaults("dsconv") == {
        "stem": 32,
        "widths": [64, 128, 256],
        "blocks_per_stage": 1,
        "kernel_size": 3,
        "dropout": 0.0,
        "stem_stride": 2,
        "full_res_stages": 0,
    }
    assert student_option_defaults("inverted_residual") == {
        "width_mult": 0.5,
        "expansion": 4,
        "depth": 1,
        "stem": 16,
        "kernel_size": 3,
        "dropout": 0.0,
        "stem_stride": 2,
        "full_res_stages": 0,
    }
    student_option_defaults("dsconv")["widths"].append(512)  # a copy, not the default itself
    assert student_option_defaults("dsconv")["widths"] == [64, 128, 256]


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        create_student("resnet", 11)
    assert info.value.key == "student.family"
    known = "dsconv, ghostnet, inverted_residual, mobilenet_v3, plain, shufflenet_v2"
    assert known in str(info.value)


@pytest.mark.parametrize(
    ("family", "options", "key", "words"),
    [
        ("dsconv", {"width": [64]}, "student.width", "unknown option"),
        ("dsconv", {"widths": 64}, "student.widths", "must be a non-empty list"),
        ("dsconv", {"stem": [32]}, "student.stem", "must be an integer, got [32]"),
        ("dsconv", {"stem": 32.0}, "student.stem", "integer"),
        ("dsconv", {"stem": True}, "student.stem", "integer"),
        ("dsconv", {"stem": 0}, "student.stem", ">= 1"),
        ("dsconv", {"widths": []}, "student.widths", "non-empty list, got []"),
        ("dsconv", {"widths": [64, None, 256]}, "student.widths", "element 1 is null"),
        ("dsconv", {"widths.1": 0}, "student.widths.1", "element 1 must be >= 1"),
        ("dsconv", {"widths.3": 8}, "student.widths.3", "past the end"),
        ("dsconv", {"depth.0": 8}, "student.depth.0", "unknown option"),
        ("dsconv", {"widths": [64, 0]}, "student.widths", "element 1 must be >= 1"),
        ("dsconv", {"widths": [64, 12.5]}, "student.widths", "element 1 must be an integer"),
        ("dsconv", {"kernel_size": 4}, "student.kernel_size", "odd"),
        ("dsconv", {"dropout": 1.0}, "student.dropout", "< 1"),
        ("dsconv", {"blocks_per_stage": None}, "student.blocks_per_stage", "null"),
        ("inverted_residual", {"width_mult": "0.5"}, "student.width_mult", "number"),
        ("inverted_residual", {"width_mult": 0}, "student.width_mult", "> 0"),
        ("inverted_residual", {"widths": [8]}, "student.widths", "unknown option"),
    ],
)
def test_bad_options_name_their_key(family: str, options: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_student_options(family, options, source="space.yaml")
    assert info.value.key == key
    assert words in info.value.problem
    assert str(info.value).startswith(f"space.yaml: {key}: ")
    with pytest.raises(ConfigError):
        create_student(family, 11, options)


def test_yaml_shapes_are_accepted() -> None:
    # YAML/Optuna hand over tuples for lists and ints for floats.
    model = create_student("dsconv", 11, {"widths": (8, 16), "dropout": 0})
    assert len(model.features) == 3
    model = create_student("inverted_residual", 11, {"width_mult": 1})
    assert n_params(model) == 73_131


def test_list_elements_set_by_key_build_the_stages() -> None:
    # A search sets student.widths.0 ... over the family's default list, whose length is the
    # number of stages; a whole list sets the number of stages.
    config = build_config({"student.widths.0": 16, "student.widths.2": 48})
    assert config.student.options == {"widths.0": 16, "widths.2": 48}
    model = create_student(config.student.family, 11, config.student.options)
    assert [stage[0][1][0].out_channels for stage in model.features[1:]] == [16, 128, 48]
    model = create_student("dsconv", 11, {"widths": [8, 8], "widths.1": 32})
    assert [stage[0][1][0].out_channels for stage in model.features[1:]] == [8, 32]


def test_a_registered_family_is_creatable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(students, "_FAMILIES", dict(students._FAMILIES))

    @register_student("linear_probe")
    def linear_probe(num_classes: int, hidden: int = 4, scale: float = 1.0) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(3, hidden),
            nn.Linear(hidden, num_classes),
        )

    assert "linear_probe" in student_families()
    assert student_option_defaults("linear_probe") == {"hidden": 4, "scale": 1.0}
    model = create_student("linear_probe", 5, {"hidden": 6})
    assert n_params(model) == (3 * 6 + 6) + (6 * 5 + 5)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(ConfigError, match=r"student\.hidden: must be an integer"):
        create_student("linear_probe", 5, {"hidden": 2.5})
    with pytest.raises(ValueError, match="already registered"):
        register_student("linear_probe")(linear_probe)
