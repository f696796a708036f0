"""Structured pruning to a parameter budget, unstructured pruning, and optimizer rebuilding."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sweep.compress.prune import (
    IMPORTANCE,
    make_permanent,
    planned_params,
    prune_step,
    ratio_for_target,
    structured_pruner,
    unstructured_prune,
)
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.train import retarget_optimizer

CLASSES = 11
SIZE = 32  # the smallest size at which inverted_residual's five stride-2 stages still see 1x1
BUDGET = 60_000

# Students above the budget, to be pruned until they fit.
OVER_BUDGET = [
    ("dsconv", {"widths": [96, 192, 384]}),
    ("dsconv", {"widths": [128, 256, 512], "stem": 48}),
    ("inverted_residual", {"width_mult": 1.5, "expansion": 6}),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def builder(family: str, options: dict | None = None) -> Callable[[], nn.Module]:
    return lambda: create_student(family, CLASSES, options or {})


def trained_ish(family: str, options: dict | None = None, seed: int = 123) -> nn.Module:
    """Another initialisation, with every parameter perturbed: stands in for trained weights."""
    torch.manual_seed(seed)
    model = builder(family, options)()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def batch(n: int = 4, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=gen), torch.randint(0, CLASSES, (n,))


def prune_fully(model: nn.Module, ratio: float, *, steps: int = 1, **kwargs: object) -> list[int]:
    """Apply every step of a plan; return the count after each step."""
    pruner = structured_pruner(model, SIZE, ratio=ratio, steps=steps, **kwargs)
    needs = pruner.criterion.needs_gradients
    return [prune_step(pruner, model, batch() if needs else None) for _ in range(steps)]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    images, labels = batch()
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("family", ["dsconv", "inverted_residual"])
def test_half_ratio_removes_channels_and_the_model_still_trains(family: str) -> None:
    torch.manual_seed(0)
    model = builder(family)()
    before = count_params(model)
    model.train()
    [after] = prune_fully(model, 0.5)
    # The 1x1 convs dominate and lose half their inputs and half their outputs: (1 - 0.5)^2;
    # depthwise convs, BN and the classifier's inputs shrink only linearly, hence above 0.25.
    low, high = {"dsconv": (0.24, 0.32), "inverted_residual": (0.24, 0.35)}[family]
    assert low * before <= after <= high * before
    assert model.training  # tracing switched to eval; the pruner switched back
    for conv in model.modules():  # depthwise convs were pruned together with their neighbours
        if isinstance(conv, nn.Conv2d) and conv.groups > 1:
            assert conv.groups == conv.in_channels == conv.out_channels
            assert conv.weight.shape[0] == conv.out_channels
    assert model.classifier[1].out_features == CLASSES
    images, _ = batch()
    assert model(images).shape == (4, CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_step(model, optimizer)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_pruner_needs_no_grad_mode_and_leaves_bn_statistics_alone() -> None:
    model = builder("dsconv")()
    stats = [b.clone() for b in model.buffers()]
    with torch.no_grad():  # the graph is traced through autograd all the same
        pruner = structured_pruner(model, SIZE, ratio=0.3)
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    assert prune_step(pruner, model) < count_params(builder("dsconv")())
    with pytest.raises(ValueError, match="already done"):
        prune_step(pruner, model)
    with pytest.raises(ValueError, match="another model"):
        prune_step(pruner, builder("dsconv")())


@pytest.mark.parametrize("importance", sorted(IMPORTANCE))
def test_channel_counts_do_not_depend_on_the_weights(importance: str) -> None:
    # The claim planning rests on: two differently initialised and perturbed copies pruned at
    # the same ratio end with the same shapes, whatever the criterion ranks first.
    family, options = OVER_BUDGET[2]
    a, b = trained_ish(family, options, seed=1), trained_ish(family, options, seed=2)
    assert prune_fully(a, 0.37, importance=importance) == prune_fully(
        b, 0.37, importance=importance
    )
    assert shapes(a) == shapes(b)
    planned = planned_params(builder(family, options), SIZE, 0.37, importance=importance)
    assert count_params(a) == planned


@pytest.mark.parametrize(("family", "options"), OVER_BUDGET)
def test_prune_to_budget_lands_within_five_percent(family: str, options: dict) -> None:
    build = builder(family, options)
    assert count_params(build()) > BUDGET
    ratio = ratio_for_target(build, SIZE, BUDGET)
    planned = planned_params(build, SIZE, ratio)
    assert 0.95 * BUDGET <= planned <= BUDGET
    model = trained_ish(family, options)
    [final] = prune_fully(model, ratio)
    assert final == planned == count_params(model)  # the plan is exact for trained weights


def test_ratio_for_target_is_the_closest_fit() -> None:
    # No ratio on a fine grid gets nearer the target from below than the search's answer.
    build, target = builder("dsconv"), 30_000
    best = planned_params(build, SIZE, ratio_for_target(build, SIZE, target))
    grid = [planned_params(build, SIZE, i / 100) for i in range(0, 90, 3)]
    assert best <= target
    assert not [n for n in grid if best < n <= target]
    assert grid == sorted(grid, reverse=True)  # monotone: what binary search relies on


def test_ratio_for_target_edges() -> None:
    build = builder("dsconv")
    assert ratio_for_target(build, SIZE, BUDGET) == 0.0  # 50,123 already fits
    with pytest.raises(ValueError, match="cannot prune to 100 parameters"):
        ratio_for_target(build, SIZE, 100)


def test_taylor_plan_is_exact_over_iterative_steps() -> None:
    family, options = OVER_BUDGET[0]
    build = builder(family, options)
    ratio = ratio_for_target(build, SIZE, BUDGET, importance="taylor", steps=2)
    model = trained_ish(family, options)
    counts = prune_fully(model, ratio, importance="taylor", steps=2)
    assert counts[-1] == planned_params(build, SIZE, ratio, importance="taylor", steps=2)
    assert all(p.grad is None for p in model.parameters())  # Taylor's gradients are cleared


@pytest.mark.parametrize("round_to", [None, 8])
def test_iterative_steps_reach_the_one_step_count(round_to: int | None) -> None:
    family, options = OVER_BUDGET[1]
    one = prune_fully(trained_ish(family, options), 0.6, round_to=round_to)
    model = trained_ish(family, options)
    three = prune_fully(model, 0.6, steps=3, round_to=round_to)
    start = count_params(trained_ish(family, options))
    # Torch-Pruning's schedule is cumulative (0.2, 0.4, 0.6 of the initial channels), so the
    # last step lands where one step does.
    assert three[-1] == one[-1]
    assert start > three[0] > three[1] > three[2]
    if round_to:
        widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert all(w % round_to == 0 for w in widths)


@pytest.mark.parametrize("importance", sorted(IMPORTANCE))
def test_every_criterion_prunes(importance: str) -> None:
    model = trained_ish("dsconv")
    before = count_params(model)
    [after] = prune_fully(model, 0.25, importance=importance)
    assert after < before


def test_taylor_without_a_batch_and_unknown_names_are_refused() -> None:
    model = builder("dsconv")()
    pruner = structured_pruner(model, SIZE, importance="taylor", ratio=0.3)
    with pytest.raises(ValueError, match="taylor_batch"):
        prune_step(pruner, model)
    with pytest.raises(ValueError, match="known: magnitude, bn_scale, taylor"):
        structured_pruner(model, SIZE, importance="lamp", ratio=0.3)
    with pytest.raises(ValueError, match="known: magnitude"):
        planned_params(builder("dsconv"), SIZE, 0.3, importance="l1")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        structured_pruner(model, SIZE, ratio=1.0)


def conv_linear_weights(model: nn.Module) -> tuple[int, int]:
    """(elements, nonzero elements) of the effective conv and linear weights but the logits'."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    weights = [m.weight for m in layers[:-1]]  # the classifier comes last and stays whole
    return sum(w.numel() for w in weights), sum(int(torch.count_nonzero(w)) for w in weights)


def test_shufflenet_prunes_inside_its_branches_and_keeps_every_shuffle_whole() -> None:
    """The channels pruned are exactly the silent ones: the index mapping is right.

    In each prunable group, the second half of the channels is silenced (BatchNorm scale and
    shift zero in every BatchNorm of the group), so removing them changes no output. Pruning
    half of each group by BatchNorm scale must then leave the logits as they were, and every
    channel shuffle must see the channels it saw before (pruning through it would permute).
    """
    torch.manual_seed(0)
    model = create_student("shufflenet_v2", CLASSES).eval()
    kept = nn.ChannelShuffle
    shuffles = {n: m.channels for n, m in model.named_modules() if isinstance(m, kept)}
    assert len(shuffles) == 8  # repeats (2, 4, 2)
    pruner = structured_pruner(model, SIZE, importance="bn_scale", ratio=0.5)
    groups = list(pruner.DG.get_all_groups(pruner.ignored_layers, pruner.root_module_types))
    assert groups  # the stem, the branches' inner channels and conv5
    with torch.no_grad():
        for group in groups:
            for dep, idxs in group:
                layer = dep.target.module
                if isinstance(layer, nn.BatchNorm2d):
                    silent = idxs[len(idxs) // 2 :]
                    layer.weight[silent] = 0
                    layer.bias[silent] = 0
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        before = model(images)
    dense = count_params(model)
    after = prune_step(pruner, model)
    assert after < 0.6 * dense
    seen = {}

    def record(name: str) -> Callable:
        return lambda module, args, out: seen.__setitem__(name, out.shape[1])

    hooks = [
        m.register_forward_hook(record(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.ChannelShuffle)
    ]
    with torch.no_grad():
        torch.testing.assert_close(model(images), before)
    for hook in hooks:
        hook.remove()
    assert seen == shuffles


def test_unstructured_pruning_halves_nonzero_weights_but_not_the_dense_count() -> None:
    model = trained_ish("dsconv")
    dense, nonzero = count_params(model), count_params(model, "nonzero")
    total, _ = conv_linear_weights(model)
    classifier = model.classifier[-1].weight.detach().clone()
    unstructured_prune(model, 0.5)
    _, kept = conv_linear_weights(model)
    assert kept == total - round(0.5 * total)
    assert torch.equal(model.classifier[-1].weight, classifier)  # never ranked
    assert count_params(model) == dense  # tensors stay dense
    assert count_params(model, "nonzero") == nonzero - (total - kept)
    make_permanent(model)
    names = [name for name, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not [n for n in names if n.endswith(("_orig", "_mask"))]
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert conv_linear_weights(model) == (total, kept)  # the zeros are baked in
    assert count_params(model) == dense
    assert model(batch()[0]).shape == (4, CLASSES)
    with pytest.raises(ValueError, match="amount"):
        unstructured_prune(model, 1.5)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda ps: torch.optim.AdamW(ps, lr=3e-3, weight_decay=0.01),
    ],
)
def test_retarget_optimizer_follows_the_pruned_parameters(make: Callable) -> None:
    model = trained_ish("dsconv")
    optimizer = make(model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    train_step(model, optimizer)
    scheduler.step()
    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    pruner = structured_pruner(model, SIZE, ratio=0.5, steps=2)
    prune_step(pruner, model)
    retarget_optimizer(optimizer, model)
    group = optimizer.param_groups[0]
    assert {k: v for k, v in group.items() if k != "params"} == hyper  # lowered lr kept
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    assert not optimizer.state  # momentum starts afresh
    with warnings.catch_warnings():
        # The scheduler still sees the optimizer's steps: no "step() overridden" warning.
        warnings.simplefilter("error")
        train_step(model, optimizer)  # mid-training: train, prune again, train
        scheduler.step()
    prune_step(pruner, model)
    retarget_optimizer(optimizer, model)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, optimizer)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_retarget_optimizer_refuses_several_groups() -> None:
    model = builder("dsconv")()
    optimizer = torch.optim.SGD(
        [{"params": model.features.parameters()}, {"params": model.classifier.parameters()}],
        lr=0.1,
    )
    with pytest.raises(ValueError, match="one parameter group"):
        retarget_optimizer(optimizer, model)
