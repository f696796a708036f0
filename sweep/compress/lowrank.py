"""Low-rank factorization of convs and linear layers by truncated SVD.

A layer whose weight reshapes to a matrix ``W`` of shape ``[out, in * k * k]`` becomes two
layers holding the rank-``r`` factors of ``W``: ``r * (in * k * k + out)`` weights instead of
``out * in * k * k``. This only pays when ``r`` is well below ``min(out, in * k * k)``, so
:func:`factorize_model` replaces a layer only where that saves parameters. Depthwise convs
(``groups > 1``) are left alone: each of their filters is a single ``k x k`` matrix already.

Each factor takes ``sqrt(S)`` of the singular values, so both start at the same scale, which
keeps fine-tuning the factorized model (the usual next step) from favouring one of them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _split_svd(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Return ``(left [rows, rank], right [rank, cols])`` with ``left @ right`` ~ ``matrix``.

    The SVD runs in float64: in float32 the full-rank product drifts by ~1e-6 relative, and
    the factors are computed once, so the cost does not matter.
    """
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    left = u[:, :rank] * root
    right = root[:, None] * vh[:rank]
    return left.to(matrix.dtype), right.to(matrix.dtype)


def _check_rank(rank: int, full_rank: int, what: str) -> None:
    if not 1 <= rank <= full_rank:
        raise ValueError(f"rank of {what} must be in [1, {full_rank}], got {rank}")


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Factorize a linear layer into ``Linear(in, rank, bias=False)`` then ``Linear(rank, out)``.

    Args:
        layer: the layer; it is not changed.
        rank: kept singular values, ``1 <= rank <= min(in, out)``. At full rank the output
            equals the layer's up to rounding.

    Returns:
        The two layers; the second carries the original bias (none if the layer has none).

    Raises:
        ValueError: ``rank`` is out of range.
    """
    out_features, in_features = layer.weight.shape
    _check_rank(rank, min(in_features, out_features), "a Linear")
    left, right = _split_svd(layer.weight, rank)
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(in_features, rank, bias=False, **factory)
    second = nn.Linear(rank, out_features, bias=layer.bias is not None, **factory)
    with torch.no_grad():
        first.weight.copy_(right)
        second.weight.copy_(left)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def factorize_conv(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """Factorize a dense conv into a ``k x k`` conv to ``rank`` channels, then a 1x1 conv.

    The SVD is of the weight reshaped to ``[out, in * k * k]``. The first conv keeps the
    original's kernel, stride, padding (and its mode) and dilation, so the output size is
    unchanged; the 1x1 conv maps ``rank`` channels to ``out`` and carries the bias.

    Args:
        layer: a conv with ``groups == 1``; it is not changed.
        rank: kept singular values, ``1 <= rank <= min(out, in * k * k)``.

    Returns:
        The two convs.

    Raises:
        ValueError: ``layer`` is grouped (depthwise included) or ``rank`` is out of range.
    """
    if layer.groups != 1:
        raise ValueError(f"only convs with groups=1 can be factorized, got groups={layer.groups}")
    out_channels, in_channels, *kernel = layer.weight.shape
    matrix = layer.weight.reshape(out_channels, -1)
    _check_rank(rank, min(matrix.shape), "a Conv2d")
    left, right = _split_svd(matrix, rank)
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Conv2d(
        in_channels,
        rank,
        tuple(kernel),
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=False,
        padding_mode=layer.padding_mode,
        **factory,
    )
    second = nn.Conv2d(rank, out_channels, 1, bias=layer.bias is not None, **factory)
    with torch.no_grad():
        first.weight.copy_(right.reshape(rank, in_channels, *kernel))
        second.weight.copy_(left.reshape(out_channels, rank, 1, 1))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _plan(layer: nn.Module, rank_ratio: float) -> tuple[int, int] | None:
    """Return ``(rank, params after)`` for an eligible layer, None for one never factorized."""
    # Exact types: subclasses may be read by their parent (MultiheadAttention uses
    # ``out_proj.weight`` directly) or hold no weight yet (LazyLinear).
    if type(layer) is nn.Linear:
        rows, cols = layer.out_features, layer.in_features
    elif type(layer) is nn.Conv2d and layer.groups == 1:
        rows, cols = layer.out_channels, layer.weight[0].numel()
    else:
        return None
    full_rank = min(rows, cols)
    rank = min(full_rank, max(1, round(rank_ratio * full_rank)))
    bias = 0 if layer.bias is None else layer.bias.numel()
    return rank, rank * (rows + cols) + bias


def factorize_model(
    model: nn.Module, rank_ratio: float, *, min_params_saved: int = 1
) -> dict[str, tuple[int, int]]:
    """Replace, in place, every dense conv and linear layer by its truncated-SVD factors.

    Eligible layers are exactly ``nn.Linear`` and ``nn.Conv2d`` with ``groups == 1`` (1x1
    included), not their subclasses. Each gets rank ``max(1, round(rank_ratio * full_rank))``
    (Python's round: halves go to even), with ``full_rank = min(out, in * k * k)``, and is
    replaced only when that saves at least ``min_params_saved`` parameters. Depthwise and other
    grouped convs, and ``model`` itself, are never replaced. A layer registered under several
    names is factorized once and replaced under all of them. The new layers are on the
    original's device and dtype, trainable, and in its train or eval mode.

    Args:
        model: the model to change.
        rank_ratio: fraction of each layer's full rank to keep, in ``(0, 1]``.
        min_params_saved: the least saving, in parameters, worth a replacement.

    Returns:
        ``{module name: (params before, params after)}`` for each replaced layer, in module
        order; the sum of the differences is the drop in ``count_params(model)``.

    Raises:
        ValueError: ``rank_ratio`` is not in ``(0, 1]``.
    """
    if not 0.0 < rank_ratio <= 1.0:
        raise ValueError(f"rank_ratio must be in (0, 1], got {rank_ratio}")
    replacements: dict[int, nn.Module] = {}
    report: dict[str, tuple[int, int]] = {}
    for name, layer in model.named_modules():
        plan = _plan(layer, rank_ratio) if name else None
        if plan is None:
            continue
        rank, after = plan
        before = _params(layer)
        if before - after < min_params_saved:
            continue
        factorize = factorize_linear if isinstance(layer, nn.Linear) else factorize_conv
        # New modules start in training mode; an eval model must not get train-mode parts.
        replacements[id(layer)] = factorize(layer, rank).train(layer.training)
        report[name] = (before, after)
    # Swapped after the walk: replacing during it would visit the new factors too. Every
    # path is visited, duplicates included, so a shared layer is replaced everywhere it is used.
    for path, module in list(model.named_modules(remove_duplicate=False)):
        if id(module) in replacements:
            model.set_submodule(path, replacements[id(module)])
    return report
