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


def test_families_are_registered() -> None:
    assert {"dsconv", "inverted_residual"} <= set(student_families())
    assert student_families() == sorted(student_families())


@pytest.mark.parametrize("family", ["dsconv", "inverted_residual"])
@pytest.mark.parametrize("size", [16, 32, 224])
def test_forward_gives_logits_at_any_size(family: str, size: int) -> None:
    model = create_student(family, 11)
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 11)
    assert logits.dtype == torch.float32


def test_dsconv_default_count_by_hand() -> None:
    # conv k x k c_in -> c_out: k*k*c_in*c_out; BN: 2*c (weight and bias; running stats are
    # buffers); a depthwise conv: k*k*c; Linear: c*11 + 11.
    stem = 3 * 3 * 3 * 32 + 2 * 32  # 928
    stage1 = 9 * 32 + 2 * 32 + 32 * 64 + 2 * 64  # 2,528
    stage2 = 9 * 64 + 2 * 64 + 64 * 128 + 2 * 128  # 9,152
    stage3 = 9 * 128 + 2 * 128 + 128 * 256 + 2 * 256  # 34,688
    head = 256 * 11 + 11  # 2,827
    assert stem + stage1 + stage2 + stage3 + head == 50_123
    assert n_params(create_student("dsconv", 11)) == 50_123 < 60_000


def test_inverted_residual_default_count_by_hand() -> None:
    # width_mult 0.5: widths 16, 24, 32, 64, 96 -> 8, 12 -> 16, 16, 32, 48; expansion 4.
    def block(c_in: int, c_out: int) -> int:
        hidden = 4 * c_in
        expand = c_in * hidden + 2 * hidden
        depthwise = 9 * hidden + 2 * hidden
        project = hidden * c_out + 2 * c_out
        return expand + depthwise + project

    stem = 3 * 3 * 3 * 16 + 2 * 16  # 464
    stages = block(16, 8) + block(8, 16) + block(16, 16) + block(16, 32) + block(32, 48)
    assert stages == 2_384 + 1_216 + 2_912 + 3_968 + 12_000
    head = 48 * 11 + 11  # 539
    assert stem + stages + head == 23_483
    assert n_params(create_student("inverted_residual", 11)) == 23_483 < 60_000


def test_stage_features_are_exposed() -> None:
    model = create_student("dsconv", 11, {"widths": [16, 32, 48, 64]})
    assert len(model.features) == 1 + 4  # stem + one entry per stage
    out = model.features(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 64, 7, 7)  # 224 / 2^5
    assert model.classifier[1].out_features == 11
    ir = create_student("inverted_residual", 11).eval()
    assert ir.features(torch.randn(1, 3, 224, 224)).shape == (1, 48, 7, 7)


def test_inverted_residual_uses_residuals_only_where_shapes_match() -> None:
    model = create_student("inverted_residual", 11, {"depth": 2})
    flags = [block.residual for stage in model.features[1:] for block in stage]
    assert flags == [False, True] * 5


def test_widths_grow_the_count_monotonically() -> None:
    counts = [
        n_params(create_student("dsconv", 11, {"widths": [w, 2 * w, 4 * w]}))
        for w in (8, 16, 32, 48, 64)
    ]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    single = [
        n_params(create_student("dsconv", 11, {"widths": [64, w, 256]}))
        for w in (32, 64, 128, 192)
    ]
    assert single == sorted(single) and len(set(single)) == len(single)
    ir = [
        n_params(create_student("inverted_residual", 11, {"width_mult": m}))
        for m in (0.25, 0.5, 0.75, 1.0)
    ]
    assert ir == [9_667, 23_483, 47_459, 73_131]


def test_blocks_and_depth_add_blocks() -> None:
    model = create_student("dsconv", 11, {"blocks_per_stage": 3, "widths": [8, 16]})
    assert [len(stage) for stage in model.features[1:]] == [3, 3]
    model = create_student("inverted_residual", 11, {"depth": 3})
    assert [len(stage) for stage in model.features[1:]] == [3] * 5


def test_construction_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(7)
    first = create_student("inverted_residual", 11).state_dict()
    torch.manual_seed(7)
    second = create_student("inverted_residual", 11).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_option_defaults_come_from_the_signature() -> None:
    assert student_option_defaults("dsconv") == {
        "stem": 32,
        "widths": [64, 128, 256],
        "blocks_per_stage": 1,
        "kernel_size": 3,
        "dropout": 0.0,
    }
    assert student_option_defaults("inverted_residual") == {
        "width_mult": 0.5,
        "expansion": 4,
        "depth": 1,
        "stem": 16,
        "kernel_size": 3,
        "dropout": 0.0,
    }
    student_option_defaults("dsconv")["widths"].append(512)  # a copy, not the default itself
    assert student_option_defaults("dsconv")["widths"] == [64, 128, 256]


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        create_student("resnet", 11)
    assert info.value.key == "student.family"
    assert "dsconv, inverted_residual" in str(info.value)


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
