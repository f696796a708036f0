"""The parameter budget: counting a model's parameters and multiply-adds, and checking proposals.

The budget counts parameters the way torchsummary does: every parameter element, trainable or
not; buffers (BatchNorm running statistics, pruning masks) are not parameters. This module knows
nothing about training.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchinfo
import torchsummary
from torch import nn

from sweep.config import StudentConfig
from sweep.models.registry import create_student
from sweep.models.weights import fold_masks


def _dense(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _nonzero(model: nn.Module) -> int:
    # named_parameters counts a shared parameter once; a masked weight counts as it is used.
    params = dict(model.named_parameters())
    masks = {
        name: mask
        for name, mask in model.named_buffers()
        if name.endswith("_mask") and name.removesuffix("_mask") + "_orig" in params
    }
    used = fold_masks({**params, **masks})
    return sum(int(torch.count_nonzero(t.detach())) for t in used.values())


_COUNTS: dict[str, Callable[[nn.Module], int]] = {"dense": _dense, "nonzero": _nonzero}


def count_params(model: nn.Module, count: str = "dense") -> int:
    """Count a model's parameter elements.

    ``"dense"`` is the sum of ``numel`` over ``model.parameters()``, trainable or not: the total
    torchsummary prints. It does not change when ``torch.nn.utils.prune`` masks weights.
    Do not use torchinfo for the dense count: for a pruned ``weight_orig`` it counts the mask's
    sum, so its total after unstructured pruning is the number of unmasked weights.

    Args:
        model: any module; parameters shared between submodules count once.
        count: ``"dense"`` (every element) or ``"nonzero"`` (elements that are not zero, with
            pruning masks applied).

    Returns:
        The number of parameter elements.

    Raises:
        ValueError: ``count`` is neither ``"dense"`` nor ``"nonzero"``.
    """
    if count not in _COUNTS:
        raise ValueError(f"unknown parameter count {count!r}; known: {', '.join(_COUNTS)}")
    return _COUNTS[count](model)


def _summary(model: nn.Module, image_size: int, **kwargs: object) -> torchinfo.ModelStatistics:
    # torchinfo moves the model it is given to ``device`` and toggles its mode; a CPU copy
    # leaves the caller's model where and as it was.
    # Its random input is drawn under fork_rng so the caller's seeded stream does not move.
    probe = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        return torchinfo.summary(
            probe,
            input_size=(1, 3, image_size, image_size),
            device="cpu",
            mode="eval",
            verbose=0,
            **kwargs,
        )


def count_macs(model: nn.Module, image_size: int) -> int:
    """Count multiply-adds for one ``3 x image_size x image_size`` image.

    This is torchinfo's ``total_mult_adds``: a conv counts (weight + bias elements) x output
    pixels, BatchNorm and Linear their parameter elements. It runs on a CPU copy of the model,
    in eval mode and without gradients.
    """
    return int(_summary(model, image_size).total_mult_adds)


def model_summary(model: nn.Module, image_size: int) -> str:
    """Return torchinfo's summary table at input ``(1, 3, image_size, image_size)``, depth 3.

    Its "Total params" is not the budget's dense count after pruning; see :func:`count_params`.
    """
    stats = _summary(
        model, image_size, depth=3, col_names=("output_size", "num_params", "mult_adds")
    )
    return str(stats)


def torchsummary_table(model: nn.Module, image_size: int, max_params: int) -> str:
    """torchsummary's own table for ``(3, image_size, image_size)``, then budget and margin.

    The table is torchsummary's (Layer (type) / Output Shape / Param #, Total / Trainable /
    Non-trainable params), made on an eval-mode CPU copy with the caller's random stream
    untouched. The lines after it state the budget's dense count (:func:`count_params`),
    the budget and the margin under it.

    Raises:
        ValueError: torchsummary's total differs from the dense count (a parameter it does
            not see), so the table would not back the count it states.
    """
    probe = copy.deepcopy(model).cpu().eval()
    text = io.StringIO()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), contextlib.redirect_stdout(text):
        torchsummary.summary(probe, (3, image_size, image_size), device="cpu")
    table = text.getvalue()
    total = int(re.search(r"^Total params: ([\d,]+)$", table, re.MULTILINE)[1].replace(",", ""))
    params = count_params(model)
    if total != params:
        raise ValueError(f"torchsummary counts {total:,} parameters, the budget {params:,}")
    margin = max_params - params
    side = "under" if margin >= 0 else "OVER"
    return (
        f"{table}"
        f"Budget: {max_params:,} parameters, every one counted (trainable or not)\n"
        f"Margin: {abs(margin):,} {side} the budget ({abs(margin) / max_params:.1%})\n"
    )


@dataclass(frozen=True)
class BudgetReport:
    """A student's parameter count against the budget, and its multiply-adds when it fits."""

    params: int
    max_params: int
    count: str
    macs: int | None = None

    @property
    def feasible(self) -> bool:
        """Whether the student fits: ``params <= max_params``."""
        return self.params <= self.max_params

    @property
    def excess(self) -> int:
        """Parameters over the budget (negative: room left)."""
        return self.params - self.max_params


def proposal_params(student: StudentConfig, num_classes: int) -> int:
    """Dense parameter count of an untrained student, without allocating its weights."""
    # On the meta device no memory is allocated or initialised, so even a model of millions of
    # parameters is counted in milliseconds and the global RNG is not touched.
    with torch.device("meta"):
        model = create_student(student.family, num_classes, student.options)
    return _dense(model)
