"""Student families: shapes, parameter counts by hand, stages, residuals, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.models.registry import (
    create_student,
    student_families,
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
