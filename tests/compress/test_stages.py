"""Compression stages inside train(): prune, factorize, then keep training the smaller model."""

from __future__ import annotations

import math
import types
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from conftest import tiny_loaders
from sweep.compress.plan import Plan, build_planned, plan_trial
from sweep.compress.prune import prunable_weights
from sweep.compress.stages import (
    BatchSource,
    Change,
    LowRankStage,
    Stage,
    StructuredPruneStage,
    UnstructuredPruneStage,
    make_stages,
)
from sweep.config import TrialConfig, build_config
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.train import train

CLASSES = 3
SIZE = 16
SMALL = {"student.stem": 8, "student.widths": [16, 32, 64]}  # 3,955 parameters at 3 classes


pytestmark = pytest.mark.usefixtures("one_thread")


def config(settings: dict[str, Any]) -> TrialConfig:
    base = {**SMALL, "train.epochs": 4, "train.device": "cpu", "train.amp": False}
    return build_config({**base, **settings})


def tiny_data(n: int = 32, batch: int = 16) -> types.SimpleNamespace:
    return tiny_loaders(CLASSES, SIZE, n, batch)


def student(cfg: TrialConfig, seed: int = 3) -> nn.Module:
    """The config's student, every parameter perturbed so none starts at a special value.

    StudentNet's classifier starts at std 0.01 and its BN shifts at 0: global magnitude
    pruning of untrained weights would take the whole classifier first.
    """
    torch.manual_seed(seed)
    model = create_student(cfg.student.family, CLASSES, cfg.student.options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class Recorder:
    """Wraps a stage; keeps the parameters right after each change it makes."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.after_change: dict[int, dict[str, Tensor]] = {}
        self.changes: dict[int, Change] = {}

    def before_epoch(self, epoch: int, model: nn.Module, batch: BatchSource) -> Change:
        change = self.stage.before_epoch(epoch, model, batch)
        if change is not None:
            self.changes[epoch] = change
            self.after_change[epoch] = snapshot(model)
        return change

    def after_training(self, model: nn.Module) -> None:
        self.stage.after_training(model)


def run(
    model: nn.Module, cfg: TrialConfig, stages: list[Any]
) -> tuple[Any, dict[int, dict[str, Tensor]]]:
    """Train; return the result and the parameters at the end of every epoch."""
    at_end: dict[int, dict[str, Tensor]] = {}

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        at_end[epoch] = snapshot(model)

    result = train(model, tiny_data(), cfg.train, stages=stages, on_epoch_end=on_epoch_end)
    return result, at_end


def assert_trained_after(
    after_change: dict[str, Tensor], at_end: dict[str, Tensor], shapes_kept: bool = True
) -> None:
    """Every parameter the change left moved during the epoch that followed it."""
    assert after_change.keys() == at_end.keys()
    for name, before in after_change.items():
        if shapes_kept:
            assert before.shape == at_end[name].shape, name
        assert not torch.equal(before, at_end[name]), f"{name} did not train after the change"


@pytest.mark.parametrize("importance", ["magnitude", "bn_scale", "taylor"])
def test_structured_pruning_steps_then_fine_tunes(importance: str) -> None:
    cfg = config(
        {
            "prune.method": "structured",
            "prune.rate": 0.5,
            "prune.importance": importance,
            "prune.steps": 2,
            "prune.start_epoch": 1,
        }
    )
    plan = plan_trial(cfg, CLASSES)
    [stage] = make_stages(cfg, plan)
    assert isinstance(stage, StructuredPruneStage) and stage.epochs == [1, 2]
    recorder = Recorder(stage)
    model = student(cfg)
    initial = count_params(model)
    result, at_end = run(model, cfg, [recorder])

    assert recorder.changes == {1: "architecture", 2: "architecture"}
    counts = [sum(p.numel() for p in recorder.after_change[e].values()) for e in (1, 2)]
    assert initial > counts[0] > counts[1] == plan.final_params
    for epoch in (1, 2):  # the optimizer follows the pruned tensors
        assert_trained_after(recorder.after_change[epoch], at_end[epoch])
    assert len(result.history) == 4
    assert all(math.isfinite(m["train_loss"]) for m in result.history)
    assert result.best_epoch >= 2  # chosen among the epochs after the last step
    assert count_params(model) == plan.final_params
    shapes = {
        k: v.shape for k, v in build_planned(cfg, CLASSES, plan.prune_ratio).state_dict().items()
    }
    assert shapes == {k: v.shape for k, v in result.state_dict.items()}
    images = tiny_data().val.dataset.tensors[0][:5]
    assert model(images).shape == (5, CLASSES)


def test_unstructured_pruning_masks_hold_the_zeros_through_fine_tuning() -> None:
    cfg = config(
        {
            "budget.count": "nonzero",
            "prune.method": "unstructured",
            "prune.rate": 0.6,
            "prune.steps": 2,
            "prune.start_epoch": 0,
            "train.epochs": 3,
        }
    )
    plan = plan_trial(cfg, CLASSES)
    model = student(cfg)
    weights = prunable_weights(model)
    assert plan.final_params == count_params(model) - round(0.6 * weights)
    [stage] = make_stages(cfg, plan)
    assert stage == UnstructuredPruneStage(0.6, [0, 1])
    recorder = Recorder(stage)
    masks: dict[str, Tensor] = {}

    def keep_masks(epoch: int, metrics: dict[str, float]) -> None:
        masks.update({k: v.clone() for k, v in model.state_dict().items() if k.endswith("_mask")})

    result = train(model, tiny_data(), cfg.train, stages=[recorder], on_epoch_end=keep_masks)

    assert recorder.changes == {0: "weights", 1: "weights"}
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    assert pruned == round(0.6 * weights)
    state = model.state_dict()
    assert not [k for k in state if k.endswith(("_orig", "_mask"))]
    assert result.state_dict.keys() == state.keys()
    assert all(torch.equal(result.state_dict[k], v) for k, v in state.items())
    assert result.best_epoch >= 1
    # Fine-tuning after the last step regrew nothing: the zeros are exactly the masked weights.
    for key, mask in masks.items():
        weight = state[key.removesuffix("_mask")]
        assert torch.equal(weight == 0, mask == 0), key
    assert count_params(model, "nonzero") == plan.final_params
    assert count_params(model) == plan.initial_params


def test_lowrank_factorizes_at_its_epoch_then_trains() -> None:
    cfg = config({"lowrank.rank_ratio": 0.25, "lowrank.start_epoch": 1, "train.epochs": 3})
    plan = plan_trial(cfg, CLASSES)
    [stage] = make_stages(cfg, plan)
    assert stage == LowRankStage(0.25, 1)
    recorder = Recorder(stage)
    model = student(cfg)
    result, at_end = run(model, cfg, [recorder])

    assert recorder.changes == {1: "architecture"}
    assert at_end[0].keys() != at_end[1].keys()  # the dense layers were replaced
    assert_trained_after(recorder.after_change[1], at_end[1])
    assert result.best_epoch >= 1
    assert count_params(model) == plan.final_params < plan.initial_params
    pointwise = model.features[3][0][1][0]  # the last block's 1x1 conv, now two convs
    assert isinstance(pointwise, nn.Sequential) and pointwise[0].out_channels == 8  # 32 / 4


@pytest.mark.parametrize(
    ("settings", "plan", "expected"),
    [
        ({}, Plan(10, 10), []),
        ({"prune.method": "structured", "prune.rate": 0.0}, Plan(10, 10, 0.0), []),
        ({"prune.method": "structured", "prune.target_params": 99}, Plan(10, 10, 0.0), []),
        ({"prune.method": "unstructured", "prune.rate": 0.0}, Plan(10, 10), []),
        (
            {
                "prune.method": "unstructured",
                "prune.rate": 0.5,
                "prune.steps": 2,
                "prune.finetune_epochs": 2,
                "prune.start_epoch": 1,
            },
            Plan(10, 5),
            [UnstructuredPruneStage(0.5, [1, 3])],
        ),
        (
            {
                "prune.method": "structured",
                "prune.target_params": 5,
                "prune.importance": "taylor",
                "prune.steps": 3,
                "prune.round_to": 4,
                "lowrank.rank_ratio": 0.25,
            },
            Plan(10, 5, 0.4),
            [LowRankStage(0.25, 0), StructuredPruneStage(0.4, "taylor", [0, 1, 2], 4)],
        ),
    ],
    ids=["none", "rate-0", "fits", "unstructured-0", "unstructured", "lowrank-structured"],
)
def test_make_stages(settings: dict[str, Any], plan: Plan, expected: list[Any]) -> None:
    assert make_stages(config(settings), plan) == expected


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_lr_schedule_runs_on_across_a_structural_change(schedule: str) -> None:
    settings = {
        "train.lr_schedule": schedule,
        "lowrank.rank_ratio": 0.5,
        "lowrank.start_epoch": 1,
        "prune.method": "structured",
        "prune.rate": 0.3,
        "prune.steps": 2,
        "prune.start_epoch": 1,
    }
    cfg = config(settings)
    plain = train(student(cfg), tiny_data(), cfg.train)
    model = student(cfg)
    with warnings.catch_warnings():
        # e.g. "optimizer.step() has been overridden after learning rate scheduler
        # initialization": a scheduler left holding a replaced optimizer.
        warnings.simplefilter("error", UserWarning)
        result = train(model, tiny_data(), cfg.train, stages=make_stages(cfg, plan_trial(cfg, 3)))
    lrs = [m["lr"] for m in result.history]
    assert lrs == [m["lr"] for m in plain.history]  # the same schedule, step for step
    assert lrs[-1] < 0.1 * cfg.train.lr
    assert count_params(model) == plan_trial(cfg, CLASSES).final_params


def test_unstructured_pruning_at_epoch_zero_keeps_a_working_classifier() -> None:
    cfg = config({"prune.method": "unstructured", "prune.rate": 0.6, "train.epochs": 2})
    torch.manual_seed(0)
    model = create_student("dsconv", CLASSES, cfg.student.options)  # as a trial builds it
    train(model, tiny_data(), cfg.train, stages=make_stages(cfg, plan_trial(cfg, CLASSES)))
    images = tiny_data().val.dataset.tensors[0][:8]
    with torch.no_grad():
        logits = model.eval()(images)
    assert not torch.allclose(logits, logits[:1].expand_as(logits))  # depends on the image
