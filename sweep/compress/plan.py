"""A trial's compression plan: the size of the model its training ends with, known up front.

The budget check happens before training, so it counts the *final* model: the student as
built, factorized (``lowrank.rank_ratio``), then channel-pruned (``prune.method:
structured``). Both change the architecture in ways that do not depend on the weights:
factorization keeps ``round(ratio * full_rank)`` of each layer's rank, and local channel
pruning keeps ``int(c * (1 - ratio))`` of each group's ``c`` channels. So applying the same
plan to an untrained copy gives the exact count (:func:`plan_trial`), and the same
:func:`build_planned` gives the architecture a pruned trial's checkpoint loads into.

Unstructured pruning leaves tensors dense: under ``budget.count: dense`` it cannot help fit,
and under ``nonzero`` it removes ``round(rate * weights)`` of the conv and linear weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sweep.compress.lowrank import factorize_model
from sweep.compress.prune import (
    max_ratio,
    planned_params,
    prunable_weights,
    ratio_for_target,
    structured_pruner,
)
from sweep.config import TrialConfig
from sweep.errors import ConfigError
from sweep.models.budget import count_params
from sweep.models.registry import create_student

# Channel counts do not depend on the input size, and tracing Torch-Pruning's dependency graph
# at 224 px costs a full forward pass; a smaller image (still >= 1 px after five stride-2
# stages) gives the same plan in a fraction of the time.
PLAN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class Plan:
    """What a trial's compression stages will do to its student."""

    initial_params: int  # dense count of the student as built
    final_params: int  # the budget's count (dense or nonzero) of the model training ends with
    prune_ratio: float = 0.0  # structured: the channel ratio of every group (0: no pruning)


def check_schedule(cfg: TrialConfig, source: str) -> None:
    """Reject compression settings that cannot run within ``train.epochs``.

    Raises:
        ConfigError: naming the setting: a prune step or the factorization that would start
            after training ends or leave no epoch to fine-tune, a rate out of range, or the
            factorization scheduled after the pruning it would have to precede.
    """
    epochs = cfg.train.epochs
    prune, lowrank = cfg.prune, cfg.lowrank
    if prune.method != "none":
        if prune.steps < 1:
            raise ConfigError(source, "prune.steps", "must be at least 1")
        if prune.finetune_epochs < 1:
            raise ConfigError(source, "prune.finetune_epochs", "must be at least 1")
        last = prune.start_epoch + (prune.steps - 1) * prune.finetune_epochs
        if prune.start_epoch < 0 or last + prune.finetune_epochs > epochs:
            raise ConfigError(
                source,
                "prune.start_epoch",
                f"steps at epochs {prune.start_epoch}..{last}, each fine-tuned "
                f"{prune.finetune_epochs} epoch(s), need more than train.epochs={epochs}",
            )
        if prune.target_params is None and not 0.0 <= prune.rate < 1.0:
            raise ConfigError(source, "prune.rate", f"must be in [0, 1), got {prune.rate}")
        if prune.method == "unstructured" and prune.target_params is not None:
            raise ConfigError(
                source,
                "prune.target_params",
                "prunes channels to a count; unstructured pruning takes prune.rate",
            )
    if lowrank.rank_ratio is not None:
        if not 0.0 < lowrank.rank_ratio <= 1.0:
            raise ConfigError(source, "lowrank.rank_ratio", "must be in (0, 1]")
        if not 0 <= lowrank.start_epoch < epochs:
            raise ConfigError(
                source, "lowrank.start_epoch", f"must be in [0, train.epochs={epochs})"
            )
        if prune.method != "none" and lowrank.start_epoch > prune.start_epoch:
            raise ConfigError(
                source,
                "lowrank.start_epoch",
                "factorization must come no later than prune.start_epoch (the pruning plan "
                "is made on the factorized model, and factors would drop pruned zeros)",
            )


def _factorized(cfg: TrialConfig, num_classes: int) -> nn.Module:
    model = create_student(cfg.student.family, num_classes, cfg.student.options)
    if cfg.lowrank.rank_ratio is not None:
        factorize_model(model, cfg.lowrank.rank_ratio)
    return model


def build_planned(cfg: TrialConfig, num_classes: int, prune_ratio: float) -> nn.Module:
    """An untrained model of the architecture the trial's training ends with.

    Draws from torch's global RNG like :func:`~sweep.models.registry.create_student`. Loading a
    pruned or factorized trial's checkpoint needs this, not the student as first built.
    """
    model = _factorized(cfg, num_classes)
    if cfg.prune.method == "structured" and prune_ratio > 0:
        pruner = structured_pruner(
            model,
            PLAN_IMAGE_SIZE,
            ratio=prune_ratio,
            steps=cfg.prune.steps,
            round_to=cfg.prune.round_to,
        )
        for _ in range(cfg.prune.steps):
            pruner.step()
    return model


def plan_trial(cfg: TrialConfig, num_classes: int) -> Plan:
    """The exact final parameter count of a trial, from untrained copies.

    A plain student is counted on the meta device (milliseconds); a pruned or factorized one
    is built for real, since its plan is traced (about 0.1 s, or ~1 s to search the ratio for
    ``prune.target_params``). The global RNG is left as it was.

    A ``prune.target_params`` no ratio reaches is planned at the largest ratio, whose count
    may then be over the budget: the trial is infeasible, not an error.
    """
    student = cfg.student
    with torch.device("meta"):
        initial = count_params(create_student(student.family, num_classes, student.options))
    prune = cfg.prune
    if cfg.lowrank.rank_ratio is None and prune.method == "none":
        return Plan(initial, initial)

    def build() -> nn.Module:
        return _factorized(cfg, num_classes)

    with torch.random.fork_rng(devices=[]):
        if prune.method != "structured":
            model = build()
            final = count_params(model)
            if prune.method == "unstructured" and cfg.budget.count == "nonzero":
                # global_unstructured removes round(amount * n) weights (torch's own rounding).
                final -= round(prune.rate * prunable_weights(model))
            return Plan(initial, final)
        plan = {"steps": prune.steps, "round_to": prune.round_to}
        ratio = prune.rate
        if prune.target_params is not None:
            try:
                ratio = ratio_for_target(build, PLAN_IMAGE_SIZE, prune.target_params, **plan)
            except ValueError:  # every group would have to lose all its channels
                ratio = max_ratio(build(), prune.round_to)
        final = planned_params(build, PLAN_IMAGE_SIZE, ratio, **plan) if ratio else None
    return Plan(initial, final if final is not None else count_params(build()), ratio)


def sampler_count(cfg: TrialConfig, num_classes: int) -> int:
    """A fast stand-in for :func:`plan_trial`'s count, for screening many proposals.

    Pruning to ``prune.target_params`` lands at or under the target (when the target can be
    reached at all; :func:`plan_trial` then says exactly), so the ratio search is skipped.
    """
    prune = cfg.prune
    if prune.method == "structured" and prune.target_params is not None:
        with torch.device("meta"):
            model = create_student(cfg.student.family, num_classes, cfg.student.options)
        return min(count_params(model), prune.target_params)
    return plan_trial(cfg, num_classes).final_params
