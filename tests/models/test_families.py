"""Student families: shapes, parameter counts by hand, stages, residuals, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_budget import torchsummary_total
from torch import nn

from sweep.compress.artifact import StudentArtifact
from sweep.compress.prune import prune_step, ratio_for_target, structured_pruner
from sweep.config import build_config
from sweep.distill.taps import student_taps, tap_shapes
from sweep.errors import ConfigError
from sweep.models.budget import count_params
from sweep.models.families import SMALL_INPUT_OPTIONS
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


# Every family: at its defaults (224-px shapes), and as the small-input options build it.
ALL = ["dsconv", "inverted_residual", "plain", "ghostnet", "shufflenet_v2", "mobilenet_v3"]

OVER_BUDGET = {  # wider than 60k, for prune-to-budget
    "dsconv": {"widths": [96, 192, 384]},
    "inverted_residual": {"width_mult": 1.5, "expansion": 6},
    "plain": {"widths": [48, 96, 128]},
    "ghostnet": {"width_mult": 2.5},
    "shufflenet_v2": {"stem": 24, "widths": [48, 96, 192], "repeats": [4, 8, 4], "last_conv": 64},
    "mobilenet_v3": {"width_mult": 1.0},
}


@pytest.mark.parametrize("family", ALL)
def test_every_family_fits_the_budget_at_its_defaults_and_counts_exactly(family: str) -> None:
    model = create_student(family, 11)
    assert 20_000 < count_params(model) <= 60_000
    with torch.device("meta"):  # the budget check counts without allocating
        assert count_params(create_student(family, 11)) == count_params(model)
    assert torchsummary_total(model, 32) == count_params(model)


@pytest.mark.parametrize("family", ALL)
def test_small_input_options_keep_a_4x4_map_at_32px(family: str) -> None:
    default = create_student(family, 11).eval()
    small = create_student(family, 11, SMALL_INPUT_OPTIONS[family]).eval()
    with torch.no_grad():
        assert default.features(torch.zeros(1, 3, 224, 224)).shape[-1] in (7, 14)
        assert default.features(torch.zeros(1, 3, 32, 32)).shape[-1] <= 2
        assert small.features(torch.zeros(1, 3, 32, 32)).shape[-1] >= 4
    assert count_params(small) == count_params(default)  # strides move no parameter


@pytest.mark.parametrize("family", ALL)
def test_every_family_trains_a_step_and_exposes_its_stages(family: str) -> None:
    torch.manual_seed(0)
    model = create_student(family, 3, SMALL_INPUT_OPTIONS[family])
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert moved > len(before) // 2
    shapes = tap_shapes(model, student_taps(model), 32)  # what FitNet and RKD read
    assert len(shapes) == len(model.features) and shapes["embedding"][0] > 0
    assert all(len(s) == 3 for name, s in shapes.items() if name != "embedding")


@pytest.mark.parametrize("family", ALL)
def test_every_family_survives_prune_to_budget(family: str) -> None:
    options = OVER_BUDGET[family]
    assert count_params(create_student(family, 11, options)) > 60_000

    def build() -> nn.Module:
        return create_student(family, 11, options)

    ratio = ratio_for_target(build, 32, 60_000)
    model = build()
    pruner = structured_pruner(model, 32, ratio=ratio)
    after = prune_step(pruner, model)
    assert 50_000 < after <= 60_000 and after == count_params(model)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 11)


@pytest.mark.parametrize("family", ALL)
def test_every_family_saves_and_reloads(family: str, tmp_path: Path) -> None:
    cfg = build_config({"student.family": family, "dataset.image_size": 32}, "test")
    torch.manual_seed(0)
    model = create_student(family, 11).eval()
    StudentArtifact(cfg, 11, state_dict=model.state_dict()).save(tmp_path, "c.yaml", "w.ckpt")
    reloaded = StudentArtifact.load(tmp_path / "c.yaml", tmp_path / "w.ckpt").build()
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(images), model(images))


def test_family_specific_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="student.widths: shufflenet_v2 has 3 stages"):
        create_student("shufflenet_v2", 11, {"widths": [32, 64]})
    with pytest.raises(ConfigError, match="student.widths: element 0 must be even"):
        create_student("shufflenet_v2", 11, {"widths": [33, 64, 128]})
    with pytest.raises(ConfigError, match="student.activation: must be hardswish or relu"):
        create_student("mobilenet_v3", 11, {"activation": "gelu"})
    with pytest.raises(ConfigError, match="student.ratio: must be <= 4"):
        create_student("ghostnet", 11, {"ratio": 5})


@pytest.mark.parametrize("family", ALL)
def test_batchnorm_statistics_follow_a_short_trial(family: str) -> None:
    # torchvision's MobileNetV3 uses momentum 0.01: after a search trial's few hundred steps its
    # running statistics had barely moved, and the evaluated model scored chance.
    model = create_student(family, 11, SMALL_INPUT_OPTIONS[family])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.rand(8, 3, 32, 32) * 4 + 2)  # inputs far from the initial statistics
    assert norms[0].running_mean.abs().mean() > 0.5
