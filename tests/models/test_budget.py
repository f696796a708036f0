"""Parameter and multiply-add counts, and budget checks of proposed students."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
import torchinfo
from torch import nn
from torch.nn.utils import prune

from sweep.config import StudentConfig
from sweep.models.budget import (
    BudgetReport,
    count_macs,
    count_params,
    model_summary,
    proposal_params,
)
from sweep.models.registry import create_student


def tiny_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),  # 3*4*3*3 = 108
        nn.BatchNorm2d(4),  # weight 4 + bias 4 = 8 (running stats are buffers)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),  # 4*2 + 2 = 10
    )


TINY_DENSE = 108 + 8 + 10  # 126


def test_dense_count_by_hand() -> None:
    model = tiny_model()
    model[4].requires_grad_(False)  # frozen parameters still count
    assert count_params(model) == count_params(model, "dense") == TINY_DENSE == 126


def test_nonzero_count_after_zeroing() -> None:
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        model[0].weight[0].zero_()  # one output filter: 3*3*3 = 27 weights
        model[4].bias.zero_()  # 2
    assert count_params(model, "nonzero") == 126 - 27 - 2 == 97
    assert count_params(model, "dense") == 126


def test_pruning_keeps_the_dense_count_but_not_torchinfo_total() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        model[0].weight.normal_()
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # masks 54 of the 108 conv weights
    assert count_params(model, "dense") == 126
    assert count_params(model, "nonzero") == 126 - 54 == 72
    # torchinfo counts weight_orig as the mask's sum: its total is not the dense count.
    stats = torchinfo.summary(model, input_size=(1, 3, 8, 8), device="cpu", verbose=0)
    assert stats.total_params == 72


def torchsummary_total(model: nn.Module, image_size: int) -> int:
    torchsummary = pytest.importorskip("torchsummary")
    # torchsummary 1.5.1 (PyPI) has no summary_string: summary() only prints its table.
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        torchsummary.summary(model, (3, image_size, image_size), device="cpu")
    match = re.search(r"^Total params: ([\d,]+)$", text.getvalue(), re.MULTILINE)
    assert match, text.getvalue()
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("dsconv", {}),
        ("dsconv", {"widths": [24, 48, 96, 128], "blocks_per_stage": 2, "kernel_size": 5}),
        ("inverted_residual", {}),
        ("inverted_residual", {"depth": 2, "width_mult": 0.375, "expansion": 6}),
    ],
)
def test_dense_count_matches_torchsummary(family: str, options: dict) -> None:
    model = create_student(family, 11, options)
    assert torchsummary_total(model, 32) == count_params(model, "dense")


def test_budget_report_feasible_and_excess() -> None:
    at_limit = BudgetReport(params=60_000, max_params=60_000, count="dense", macs=None)
    assert at_limit.feasible and at_limit.excess == 0
    over = BudgetReport(params=60_001, max_params=60_000, count="dense", macs=None)
    assert not over.feasible and over.excess == 1
    under = BudgetReport(params=50_123, max_params=60_000, count="dense", macs=5)
    assert under.feasible and under.excess == -9_877


def test_a_huge_proposal_is_counted_fast_on_the_meta_device() -> None:
    student = StudentConfig("dsconv", {"widths": [512, 1024, 2048]})
    stem = 27 * 32 + 64
    stages = (
        (9 * 32 + 64 + 32 * 512 + 1024)
        + (9 * 512 + 1024 + 512 * 1024 + 2048)
        + (9 * 1024 + 2048 + 1024 * 2048 + 4096)
    )
    assert proposal_params(student, 11) == stem + stages + 2048 * 11 + 11 == 2_685_707
    torch.manual_seed(3)
    state = torch.random.get_rng_state()
    giant = StudentConfig("dsconv", {"widths": [4096, 8192, 16384]})  # 168M parameters
    assert proposal_params(giant, 11) == 168_277_259
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing was initialised
    small = StudentConfig("dsconv", {"widths": [16, 32]})
    assert proposal_params(small, 11) == count_params(create_student("dsconv", 11, small.options))


def test_count_macs_of_one_conv_by_hand() -> None:
    model = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 32x32 -> 16x16
    # torchinfo: (weight + bias elements) x output pixels = (3*8*3*3 + 8) * 16*16
    assert count_macs(model, 32) == (216 + 8) * 256 == 57_344
    assert model.training  # measured on a copy: the model's mode is untouched


def test_model_summary_text() -> None:
    text = model_summary(create_student("inverted_residual", 11), 64)
    assert "Total params: 23,483" in text
    assert "InvertedResidual" in text


def test_unknown_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="dense, nonzero"):
        count_params(tiny_model(), "sparse")
