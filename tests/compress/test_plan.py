"""The compression plan: the final parameter count known before training, and its checks."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
from torch import nn

from conftest import tiny_loaders
from sweep.compress.plan import Plan, build_planned, check_schedule, plan_trial, sampler_count
from sweep.compress.prune import prunable_weights
from sweep.compress.stages import make_stages
from sweep.config import TrialConfig, build_config
from sweep.errors import ConfigError
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.train import train

CLASSES = 3
SIZE = 16  # training images; the plan traces at PLAN_IMAGE_SIZE whatever the data
BUDGET = 60_000

# Students above the budget, to be pruned until they fit.
OVER_BUDGET = [
    ("dsconv", {"widths": [96, 192, 384]}),
    ("dsconv", {"widths": [128, 256, 512], "stem": 48}),
    ("inverted_residual", {"width_mult": 1.5, "expansion": 6}),
]
SMALL = {"student.stem": 8, "student.widths": [16, 32, 64]}  # 3,955 parameters at 3 classes


pytestmark = pytest.mark.usefixtures("one_thread")


def config(settings: dict[str, Any]) -> TrialConfig:
    base = {"train.epochs": 4, "train.device": "cpu", "train.amp": False}
    return build_config({**base, **settings})


def student_settings(family: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"student.family": family, **{f"student.{k}": v for k, v in options.items()}}


def tiny_data(n: int = 32, batch: int = 16) -> types.SimpleNamespace:
    return tiny_loaders(CLASSES, SIZE, n, batch)


def other_student(cfg: TrialConfig, seed: int = 99) -> nn.Module:
    """The trial's student under another seed, every parameter perturbed: not the plan's."""
    torch.manual_seed(seed)
    model = create_student(cfg.student.family, CLASSES, cfg.student.options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def dense(cfg: TrialConfig) -> int:
    return count_params(create_student(cfg.student.family, CLASSES, cfg.student.options))


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize(("family", "options"), OVER_BUDGET)
def test_plan_to_a_target_is_exact_for_the_trained_model(
    family: str, options: dict[str, Any], steps: int
) -> None:
    cfg = config(
        {
            **student_settings(family, options),
            "prune.method": "structured",
            "prune.target_params": BUDGET,
            "prune.steps": steps,
            "prune.start_epoch": 1,
            "train.epochs": 1 + steps,
        }
    )
    check_schedule(cfg, "test")
    plan = plan_trial(cfg, CLASSES)
    assert plan.initial_params == dense(cfg) > BUDGET
    assert 0.95 * BUDGET <= plan.final_params <= BUDGET
    assert 0 < plan.prune_ratio < 1

    model = other_student(cfg)
    result = train(model, tiny_data(), cfg.train, stages=make_stages(cfg, plan))
    assert count_params(model) == plan.final_params  # the weights did not change the count

    planned = build_planned(cfg, CLASSES, plan.prune_ratio)
    assert count_params(planned) == plan.final_params
    shapes = {k: v.shape for k, v in planned.state_dict().items()}
    assert shapes == {k: v.shape for k, v in result.state_dict.items()}
    planned.load_state_dict(result.state_dict)  # strict: the checkpoint loads
    images = tiny_data().val.dataset.tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(planned.eval()(images), model.eval()(images))


def test_structured_at_a_fixed_rate() -> None:
    cfg = config({**SMALL, "prune.method": "structured", "prune.rate": 0.3})
    plan = plan_trial(cfg, CLASSES)
    assert plan.prune_ratio == 0.3
    assert plan.initial_params == dense(cfg)
    assert plan.final_params < plan.initial_params
    assert count_params(build_planned(cfg, CLASSES, plan.prune_ratio)) == plan.final_params


def test_structured_rate_zero_plans_no_pruning() -> None:
    cfg = config({**SMALL, "prune.method": "structured", "prune.rate": 0.0})
    assert plan_trial(cfg, CLASSES) == Plan(dense(cfg), dense(cfg), 0.0)


def test_target_above_the_student_plans_no_pruning() -> None:
    cfg = config({**SMALL, "prune.method": "structured", "prune.target_params": BUDGET})
    assert plan_trial(cfg, CLASSES) == Plan(dense(cfg), dense(cfg), 0.0)


def test_unstructured_lowers_only_the_nonzero_count() -> None:
    settings = {**SMALL, "prune.method": "unstructured", "prune.rate": 0.6}
    nonzero = config({**settings, "budget.count": "nonzero"})
    student = create_student("dsconv", CLASSES, nonzero.student.options)
    initial, weights = count_params(student), prunable_weights(student)
    # Every conv and linear weight but the classifier's 64 x 3; BN and biases are not ranked.
    assert weights == 3600 - 64 * 3
    assert plan_trial(nonzero, CLASSES) == Plan(initial, initial - round(0.6 * weights))
    assert plan_trial(config({**settings, "budget.count": "dense"}), CLASSES) == Plan(
        initial, initial
    )


def test_lowrank_plan_counts_the_factorized_model() -> None:
    cfg = config({**SMALL, "lowrank.rank_ratio": 0.25})
    plan = plan_trial(cfg, CLASSES)
    assert plan.initial_params == dense(cfg)
    assert plan.final_params < plan.initial_params
    assert plan.final_params == count_params(build_planned(cfg, CLASSES, plan.prune_ratio))
    assert plan.prune_ratio == 0.0


def test_lowrank_then_structured_plans_on_the_factorized_model() -> None:
    settings = {**SMALL, "lowrank.rank_ratio": 0.5, "prune.method": "structured"}
    cfg = config({**settings, "prune.rate": 0.3, "prune.start_epoch": 1})
    plan = plan_trial(cfg, CLASSES)
    lowrank_only = plan_trial(config({**SMALL, "lowrank.rank_ratio": 0.5}), CLASSES)
    assert plan.final_params < lowrank_only.final_params < plan.initial_params
    assert plan.final_params == count_params(build_planned(cfg, CLASSES, plan.prune_ratio))


def test_plain_student_plan_is_its_dense_count() -> None:
    cfg = config({})
    assert plan_trial(cfg, 11) == Plan(50_123, 50_123, 0.0)  # the dsconv defaults at 11 classes
    cfg = config({"student.family": "inverted_residual"})
    assert plan_trial(cfg, 11) == Plan(23_483, 23_483, 0.0)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"prune.method": "structured", "prune.target_params": 2_000},
        {"prune.method": "structured", "prune.rate": 0.4, "prune.importance": "taylor"},
        {"prune.method": "unstructured", "prune.rate": 0.5, "budget.count": "nonzero"},
        {"lowrank.rank_ratio": 0.5},
    ],
    ids=["plain", "target", "taylor", "unstructured", "lowrank"],
)
def test_plan_leaves_the_global_rng_alone(settings: dict[str, Any]) -> None:
    cfg = config({**SMALL, **settings})
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    plan_trial(cfg, CLASSES)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_unreachable_target_is_an_infeasible_plan_not_an_error() -> None:
    cfg = config({**SMALL, "prune.method": "structured", "prune.target_params": 100})
    plan = plan_trial(cfg, CLASSES)
    assert plan.final_params > 100  # over the target: the trial is infeasible
    assert 0 < plan.prune_ratio < 1 and plan.final_params < plan.initial_params
    assert count_params(build_planned(cfg, CLASSES, plan.prune_ratio)) == plan.final_params


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"prune.method": "structured", "prune.rate": 0.3},
        {"prune.method": "unstructured", "prune.rate": 0.5, "budget.count": "nonzero"},
        {"prune.method": "unstructured", "prune.rate": 0.5},
        {"lowrank.rank_ratio": 0.25},
    ],
    ids=["plain", "structured-rate", "unstructured-nonzero", "unstructured-dense", "lowrank"],
)
def test_sampler_count_is_the_plan_without_a_target(settings: dict[str, Any]) -> None:
    cfg = config({**SMALL, **settings})
    assert sampler_count(cfg, CLASSES) == plan_trial(cfg, CLASSES).final_params


@pytest.mark.parametrize("target", [100, 2_000, BUDGET])
def test_sampler_count_is_within_a_target(target: int) -> None:
    cfg = config({**SMALL, "prune.method": "structured", "prune.target_params": target})
    count = sampler_count(cfg, CLASSES)
    assert count <= target
    assert count == min(dense(cfg), target)


VALID = 4  # train.epochs in the schedule checks


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        (
            {"prune.method": "structured", "prune.rate": 0.3, "prune.start_epoch": 4},
            "prune.start_epoch",
        ),
        (
            {
                "prune.method": "structured",
                "prune.rate": 0.3,
                "prune.steps": 2,
                "prune.start_epoch": 3,
            },
            "prune.start_epoch",
        ),
        (
            {
                "prune.method": "unstructured",
                "prune.rate": 0.3,
                "prune.steps": 2,
                "prune.finetune_epochs": 2,
                "prune.start_epoch": 1,  # steps at 1 and 3, the last fine-tuned past epoch 3
            },
            "prune.start_epoch",
        ),
        (
            {"prune.method": "structured", "prune.rate": 0.3, "prune.start_epoch": -1},
            "prune.start_epoch",
        ),
        ({"prune.method": "structured", "prune.rate": 0.3, "prune.steps": 0}, "prune.steps"),
        (
            {"prune.method": "structured", "prune.rate": 0.3, "prune.finetune_epochs": 0},
            "prune.finetune_epochs",
        ),
        ({"prune.method": "structured", "prune.rate": 1.0}, "prune.rate"),
        ({"prune.method": "unstructured", "prune.rate": -0.1}, "prune.rate"),
        ({"prune.method": "unstructured", "prune.target_params": 50_000}, "prune.target_params"),
        ({"lowrank.rank_ratio": 0.0}, "lowrank.rank_ratio"),
        ({"lowrank.rank_ratio": 1.5}, "lowrank.rank_ratio"),
        ({"lowrank.rank_ratio": 0.5, "lowrank.start_epoch": 4}, "lowrank.start_epoch"),
        ({"lowrank.rank_ratio": 0.5, "lowrank.start_epoch": -1}, "lowrank.start_epoch"),
        (
            {
                "lowrank.rank_ratio": 0.5,
                "lowrank.start_epoch": 2,
                "prune.method": "structured",
                "prune.rate": 0.3,
                "prune.start_epoch": 1,
            },
            "lowrank.start_epoch",
        ),
    ],
)
def test_check_schedule_names_the_bad_setting(settings: dict[str, Any], key: str) -> None:
    # A value out of its range is refused as the config is read; a schedule that does not fit
    # the epochs, by check_schedule. Either way before anything runs, naming the key.
    with pytest.raises(ConfigError) as caught:
        cfg = build_config({**settings, "train.epochs": VALID}, "space.yaml")
        check_schedule(cfg, "space.yaml")
    assert caught.value.key == key
    assert key in str(caught.value) and str(caught.value).startswith("space.yaml: ")


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"prune.method": "none", "prune.rate": 0.9, "prune.start_epoch": 99},  # unused when off
        # The last step at epoch 3 still gets its one fine-tuning epoch of 4.
        {
            "prune.method": "structured",
            "prune.rate": 0.3,
            "prune.steps": 2,
            "prune.start_epoch": 2,
        },
        {"prune.method": "structured", "prune.rate": 0.9, "prune.target_params": BUDGET},
        {"prune.method": "unstructured", "prune.rate": 0.0},
        {"lowrank.rank_ratio": 1.0, "lowrank.start_epoch": 3},
        {
            "lowrank.rank_ratio": 0.5,
            "lowrank.start_epoch": 1,
            "prune.method": "structured",
            "prune.rate": 0.3,
            "prune.start_epoch": 1,
        },
    ],
)
def test_check_schedule_accepts_a_schedule_that_fits(settings: dict[str, Any]) -> None:
    assert check_schedule(config({**settings, "train.epochs": VALID}), "space.yaml") is None


def test_lowrank_after_unstructured_pruning_is_refused_or_planned() -> None:
    cfg = config(
        {
            **SMALL,
            "budget.count": "nonzero",
            "prune.method": "unstructured",
            "prune.rate": 0.5,
            "prune.start_epoch": 0,
            "lowrank.rank_ratio": 0.25,
            "lowrank.start_epoch": 2,
            "train.epochs": 3,
        }
    )
    try:
        check_schedule(cfg, "space.yaml")
    except ConfigError as exc:  # one fix: refuse the order, as for structured pruning
        assert "lowrank.start_epoch" in str(exc)
        return
    # The other: plan what training does.
    plan = plan_trial(cfg, CLASSES)
    model = other_student(cfg)
    train(model, tiny_data(), cfg.train, stages=make_stages(cfg, plan))
    assert count_params(model, "nonzero") == plan.final_params
