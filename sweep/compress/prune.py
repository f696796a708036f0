"""Pruning a student: structured (channels removed) to reach a parameter budget, or unstructured.

Structured pruning composes an importance criterion from :data:`IMPORTANCE` with Torch-Pruning's
``BasePruner``: its dependency graph removes a channel from every layer sharing it (a depthwise
conv with its neighbouring 1x1 convs, both sides of a residual sum), physically, so the dense
count goes down. The final classifier ``Linear`` is never pruned: its outputs are the classes.

Each channel group is ranked on its own (local pruning) and keeps ``int(c * (1 - ratio))`` of its
``c`` channels, so channel counts follow from the ratio and the layer structure alone, never from
the weights or the criterion. That is why :func:`planned_params` can count a plan on an untrained
copy before training, and why a gradient criterion (Taylor) is planned with magnitude scores.

Unstructured pruning (:func:`unstructured_prune`) only zeroes weights: tensors stay dense, so with
``budget.count: dense`` it cannot lower the count; ``count_params(model, "nonzero")`` drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn
from torch.nn.utils import prune

from sweep.models.budget import count_params

_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)  # the layers unstructured pruning ranks


@dataclass(frozen=True)
class Criterion:
    """A channel-importance factory; ``needs_gradients`` when its scores read ``.grad``."""

    make: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False

    def __call__(self) -> tp.importance.Importance:
        return self.make()


IMPORTANCE: dict[str, Criterion] = {
    # L2 norm of every weight a channel touches (conv filters, BN scale, next layer's inputs).
    "magnitude": Criterion(lambda: tp.importance.GroupMagnitudeImportance(p=2)),
    # |BN gamma| (network slimming); a group without BatchNorm has no score and is left whole.
    "bn_scale": Criterion(tp.importance.BNScaleImportance),
    # |w * dL/dw|: first-order estimate of the loss change when a channel goes.
    "taylor": Criterion(tp.importance.GroupTaylorImportance, needs_gradients=True),
}


def _criterion(name: str) -> Criterion:
    if name not in IMPORTANCE:
        raise ValueError(f"unknown importance {name!r}; known: {', '.join(IMPORTANCE)}")
    return IMPORTANCE[name]


class ChannelPruner(tp.pruner.BasePruner):
    """Torch-Pruning's ``BasePruner`` that keeps its criterion, so a step knows what it needs."""

    def __init__(self, *args: object, criterion: str, **kwargs: object) -> None:
        self.criterion = _criterion(criterion)
        super().__init__(*args, importance=self.criterion(), **kwargs)


class _Whole(tp.pruner.function.BasePruningFunc):
    """A layer whose channels are never pruned, nor any channel group that passes through it.

    Its input and output pruning are one function (so Torch-Pruning couples them), and the
    layer is ignored: every group reaching it is left whole. Used for ``nn.ChannelShuffle``,
    which permutes channels (Torch-Pruning would otherwise pass indices through unpermuted).
    """

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int | None:
        return getattr(layer, "channels", None)  # None: unknown, inferred from the neighbours

    get_in_channels = get_out_channels


# Layers kept whole with every channel group through them (see :class:`_Whole`).
KEPT_WHOLE: tuple[type[nn.Module], ...] = (nn.ChannelShuffle,)


def _ignored(model: nn.Module) -> list[nn.Module]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    whole = [m for m in model.modules() if isinstance(m, KEPT_WHOLE)]
    return linears[-1:] + whole  # the logits layer: pruning its outputs would drop classes


def structured_pruner(
    model: nn.Module,
    image_size: int,
    *,
    importance: str = "magnitude",
    ratio: float,
    steps: int = 1,
    round_to: int | None = None,
) -> ChannelPruner:
    """Make a channel pruner for ``model``; each :func:`prune_step` applies one step of it.

    Args:
        model: the network; its train/eval mode is kept (tracing switches it to eval).
        image_size: side of the ``[1, 3, S, S]`` input used to trace the dependency graph.
        importance: a name in :data:`IMPORTANCE`.
        ratio: fraction of each channel group to remove in total, in ``[0, 1)``. A group that
            would keep no channel (``int(c * (1 - ratio)) < max(1, round_to)``) is left whole.
        steps: the ratio is reached in ``steps`` equal steps (Torch-Pruning's iterative steps);
            the final channel counts are those of one step at ``ratio``.
        round_to: keep channel counts multiples of this (None: any count).

    Returns:
        A ``BasePruner`` (Torch-Pruning) that also knows its :class:`Criterion`.

    Raises:
        ValueError: unknown importance, ``ratio`` outside ``[0, 1)`` or ``steps < 1``.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio!r}")
    if steps < 1:
        raise ValueError(f"pruning steps must be >= 1, got {steps!r}")
    param = next(model.parameters())
    # Zeros, not randn: tracing needs only shapes, and must not move the caller's seeded RNG.
    example = torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    with torch.enable_grad():  # the graph is traced through autograd, even under no_grad
        pruner = ChannelPruner(
            model,
            example,
            criterion=importance,
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=_ignored(model),
            customized_pruners={kind: _Whole() for kind in KEPT_WHOLE},
            round_to=round_to,
        )
    model.train(was_training)
    return pruner


def prune_step(
    pruner: ChannelPruner, model: nn.Module, taylor_batch: tuple[Tensor, Tensor] | None = None
) -> int:
    """Apply the pruner's next step and return the dense parameter count after it.

    Works mid-training, in train mode. Pruning replaces the pruned parameters with new tensors,
    so an optimizer made before holds stale ones: call :func:`~sweep.train.retarget_optimizer`
    after. Gradients are cleared (set to None) after the step.

    Args:
        pruner: from :func:`structured_pruner` on ``model``.
        model: the model being pruned.
        taylor_batch: ``(images, labels)`` whose cross-entropy gradients score the channels;
            required by criteria that need gradients (``taylor``), ignored by the others. Its
            forward runs in the model's mode: in train mode it updates BN running statistics.

    Raises:
        ValueError: ``pruner`` is not ``model``'s, all its steps are done, or a gradient
            criterion got no batch.
    """
    if pruner.model is not model:
        raise ValueError("the pruner was made for another model")
    if pruner.current_step >= pruner.iterative_steps:
        raise ValueError(f"all {pruner.iterative_steps} pruning steps are already done")
    if pruner.criterion.needs_gradients:
        if taylor_batch is None:
            raise ValueError("this importance needs gradients: pass taylor_batch=(images, labels)")
        device = next(model.parameters()).device
        images, labels = (t.to(device) for t in taylor_batch)
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
    pruner.step()
    # Torch-Pruning carries pruned .grad along; they belong to no optimizer step any more.
    model.zero_grad(set_to_none=True)
    return count_params(model)


def planned_params(
    build: Callable[[], nn.Module],
    image_size: int,
    ratio: float,
    *,
    importance: str = "magnitude",
    steps: int = 1,
    round_to: int | None = None,
) -> int:
    """Dense parameter count after the full plan, applied to an untrained copy from ``build()``.

    Exact for the trained model too: local pruning keeps ``int(c * (1 - ratio))`` channels of
    each group whatever the weights, so a criterion that needs gradients is counted with
    magnitude scores (same channel counts, no data needed). The global RNG is left as it was.
    Arguments are those of :func:`structured_pruner`; ``build`` makes a fresh model.

    Raises:
        ValueError: see :func:`structured_pruner`.
    """
    planning = "magnitude" if _criterion(importance).needs_gradients else importance
    with torch.random.fork_rng(devices=[]):  # building draws weights from the global RNG
        model = build()
    pruner = structured_pruner(
        model, image_size, importance=planning, ratio=ratio, steps=steps, round_to=round_to
    )
    for _ in range(steps):
        pruner.step()
    return count_params(model)


def _candidate_ratios(model: nn.Module, round_to: int | None) -> list[float]:
    """One ratio inside each interval where every group's channel count is constant.

    A group of ``c`` channels changes count only at ratios ``1 - k/c``; above ``1 - q/c`` (q the
    rounding) it would be emptied, which Torch-Pruning refuses by leaving the group whole, so the
    count would rise again. Below that cap the count never rises with the ratio.
    """
    ignored = _ignored(model)
    layers = [m for m in model.modules() if m not in ignored]
    widths = {m.out_channels for m in layers if isinstance(m, nn.modules.conv._ConvNd)}
    widths |= {m.out_features for m in layers if isinstance(m, nn.Linear)}
    q = round_to or 1
    cap = min((1 - q / c for c in widths if c > q), default=0.0)
    cuts = sorted({0.0, cap} | {1 - k / c for c in widths for k in range(1, c)})
    cuts = [x for x in cuts if x <= cap]
    # Midpoints stay clear of the cuts, where int(c * (1 - r)) would hang on float rounding.
    return [0.0] + [(a + b) / 2 for a, b in zip(cuts, cuts[1:], strict=False)]


def max_ratio(model: nn.Module, round_to: int | None = None) -> float:
    """The largest ratio worth planning: past it some group would be emptied and left whole."""
    return _candidate_ratios(model, round_to)[-1]


def ratio_for_target(
    build: Callable[[], nn.Module],
    image_size: int,
    target_params: int,
    *,
    importance: str = "magnitude",
    steps: int = 1,
    round_to: int | None = None,
) -> float:
    """Find the smallest channel-pruning ratio whose plan lands at or under ``target_params``.

    Binary search (about 10-12 :func:`planned_params`) over one ratio per interval of constant
    channel counts: the result is the largest count a plan reaches within the target, exactly.
    With ``round_to`` counts move by multiples of channels, so the fit may fall further below.

    Returns:
        The ratio for :func:`structured_pruner`; 0.0 when the model already fits.

    Raises:
        ValueError: no ratio reaches the target (every group would have to lose all channels).
    """
    plan = {"importance": importance, "steps": steps, "round_to": round_to}

    def fits(ratio: float) -> bool:
        return planned_params(build, image_size, ratio, **plan) <= target_params

    with torch.random.fork_rng(devices=[]):
        candidates = _candidate_ratios(build(), round_to)
    if fits(0.0):
        return 0.0
    if not fits(candidates[-1]):
        smallest = planned_params(build, image_size, candidates[-1], **plan)
        raise ValueError(
            f"cannot prune to {target_params} parameters: {smallest} remain at ratio "
            f"{candidates[-1]:.3f}, the most that leaves the narrowest layer a channel "
            f"(or round_to={round_to} channels)"
        )
    lo, hi = 0, len(candidates) - 1  # candidates[lo] does not fit, candidates[hi] does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(candidates[mid]) else (mid, hi)
    return candidates[hi]


def unstructured_prune(model: nn.Module, amount: float | int) -> None:
    """Zero the smallest-|w| weights over the conv and linear layers but the classifier.

    Global L1 ranking (``torch.nn.utils.prune.global_unstructured``): layers lose different
    fractions. Masks are kept as ``weight_mask`` buffers until :func:`make_permanent`. Called
    again, it prunes among the weights still unpruned (torch's ``PruningContainer``), so an
    iterative schedule passes counts. The dense count does not change; the nonzero count does.

    Args:
        model: the model to prune in place.
        amount: a fraction in ``[0, 1]`` of the weights not yet pruned, or (an int) their
            number; torch rounds a fraction with ``round(amount * n)``.

    Raises:
        ValueError: a fraction outside ``[0, 1]`` or a negative count.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f"unstructured pruning amount must be a number, got {amount!r}")
    if isinstance(amount, int) and amount < 0:
        raise ValueError(f"unstructured pruning count must be >= 0, got {amount!r}")
    if isinstance(amount, float) and not 0.0 <= amount <= 1.0:
        raise ValueError(f"unstructured pruning amount must be in [0, 1], got {amount!r}")
    weights = [(m, "weight") for m in _ranked_layers(model)]
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=amount)


def prunable_weights(model: nn.Module) -> int:
    """The number of weights :func:`unstructured_prune` ranks: conv and linear layers but the
    classifier."""
    return sum(m.weight.numel() for m in _ranked_layers(model))


def _ranked_layers(model: nn.Module) -> list[nn.Module]:
    # The classifier is left whole, as in structured pruning: it starts ~10x smaller than the
    # convs (std 0.01), so a global ranking at the first epoch would zero all of it for good.
    ignored = _ignored(model)
    return [m for m in model.modules() if isinstance(m, _WEIGHTED) and m not in ignored]


def make_permanent(model: nn.Module) -> None:
    """Bake every pruning mask into its weight and drop ``*_orig`` and ``*_mask``.

    The zeros stay, but nothing holds them at zero any more: training afterwards regrows them.
    """
    for module in model.modules():
        # torch.nn.utils.prune keeps each pruned tensor's mask as the buffer ``<name>_mask``.
        buffers = [name for name, _ in module.named_buffers(recurse=False)]
        for name in [b.removesuffix("_mask") for b in buffers if b.endswith("_mask")]:
            prune.remove(module, name)
