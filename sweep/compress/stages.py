"""Compression stages that change a model during training: factorize, prune, fine-tune.

:func:`~sweep.train.train` calls every stage's ``before_epoch`` at the start of each epoch;
a stage that changed the model says how, so training knows what to redo:

- ``"weights"``: some weights were zeroed (unstructured pruning); the parameters are the same
  tensors, so the optimizer stays, but earlier epochs' checkpoints no longer describe the
  final model.
- ``"architecture"``: layers were replaced or shrunk (factorization, channel pruning); the
  optimizer is rebuilt over the new tensors and earlier checkpoints no longer load.

Either way the best-epoch checkpoint is chosen among the epochs after the last change, so a
trial that trains to the end yields a model of the planned (budgeted) size; one stopped early
by the pruner may not, and is recorded early-stopped. Training keeps its loss,
distillation included, while it fine-tunes between and after the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from torch import Tensor, nn

from sweep.compress.lowrank import factorize_model
from sweep.compress.plan import PLAN_IMAGE_SIZE, Plan
from sweep.compress.prune import (
    ChannelPruner,
    make_permanent,
    prunable_weights,
    prune_step,
    structured_pruner,
    unstructured_prune,
)
from sweep.config import TrialConfig

Change = Literal["weights", "architecture"] | None
BatchSource = Callable[[], tuple[Tensor, Tensor]]  # one training batch, on the device


class Stage(Protocol):
    """A change to the model at chosen epochs."""

    def before_epoch(self, epoch: int, model: nn.Module, batch: BatchSource) -> Change:
        """Change the model if this epoch is one of the stage's; say how it changed."""

    def after_training(self, model: nn.Module) -> None:
        """Finish the stage on the trained model (which then holds its best weights)."""


def _step_epochs(start: int, steps: int, every: int) -> list[int]:
    return [start + k * every for k in range(steps)]


@dataclass
class LowRankStage:
    """Factorize every dense conv and linear layer by truncated SVD at one epoch."""

    rank_ratio: float
    epoch: int

    def before_epoch(self, epoch: int, model: nn.Module, batch: BatchSource) -> Change:
        """Factorize at ``self.epoch``."""
        if epoch != self.epoch:
            return None
        return "architecture" if factorize_model(model, self.rank_ratio) else None

    def after_training(self, model: nn.Module) -> None:
        """Nothing to finish."""


@dataclass
class StructuredPruneStage:
    """Remove channels in ``steps`` equal steps (Torch-Pruning), ``every`` epochs apart."""

    ratio: float
    importance: str
    epochs: list[int]
    round_to: int | None = None
    _pruner: ChannelPruner | None = field(default=None, repr=False)

    def before_epoch(self, epoch: int, model: nn.Module, batch: BatchSource) -> Change:
        """Prune one step at each of ``self.epochs``."""
        if epoch not in self.epochs:
            return None
        if self._pruner is None:  # made on the trained model: the importances read it
            self._pruner = structured_pruner(
                model,
                PLAN_IMAGE_SIZE,  # the plan's size: the same trace, so the same channels
                importance=self.importance,
                ratio=self.ratio,
                steps=len(self.epochs),
                round_to=self.round_to,
            )
        taylor = batch() if self._pruner.criterion.needs_gradients else None
        prune_step(self._pruner, model, taylor)
        return "architecture"

    def after_training(self, model: nn.Module) -> None:
        """Nothing to finish: pruned channels are gone already."""


@dataclass
class UnstructuredPruneStage:
    """Zero ``rate`` of all conv and linear weights (global magnitude) over ``epochs``.

    Each step zeroes a whole number of weights, so the steps add up to exactly
    ``round(rate * weights)``, the count :func:`~sweep.compress.plan.plan_trial` planned. The
    masks hold the zeros through fine-tuning and are made permanent at the end.
    """

    rate: float
    epochs: list[int]

    def before_epoch(self, epoch: int, model: nn.Module, batch: BatchSource) -> Change:
        """Prune one step at each of ``self.epochs``."""
        if epoch not in self.epochs:
            return None
        total = prunable_weights(model)
        k = self.epochs.index(epoch) + 1
        steps = len(self.epochs)
        count = round(self.rate * total * k / steps) - round(self.rate * total * (k - 1) / steps)
        unstructured_prune(model, count)
        return "weights"

    def after_training(self, model: nn.Module) -> None:
        """Bake the masks into the weights."""
        make_permanent(model)


def make_stages(cfg: TrialConfig, plan: Plan) -> list[Stage]:
    """The stages a trial's settings ask for, in the order they run."""
    stages: list[Stage] = []
    if cfg.lowrank.rank_ratio is not None:
        stages.append(LowRankStage(cfg.lowrank.rank_ratio, cfg.lowrank.start_epoch))
    prune = cfg.prune
    epochs = _step_epochs(prune.start_epoch, prune.steps, prune.finetune_epochs)
    if prune.method == "structured" and plan.prune_ratio > 0:
        stages.append(
            StructuredPruneStage(plan.prune_ratio, prune.importance, epochs, prune.round_to)
        )
    elif prune.method == "unstructured" and prune.rate > 0:
        stages.append(UnstructuredPruneStage(prune.rate, epochs))
    return stages
