"""The accuracy-versus-parameters plot of a study, with the budget line and the front."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweep.records import FinalResult, TrialRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Room above and below the measured accuracies, as a share of their range (at least 0.01).
_MARGIN = 0.08


def front_figure(
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    max_params: int,
    title: str,
    final: Sequence[FinalResult] = (),
) -> Figure:
    """Scatter of every trial with a parameter count, the budget line and the front.

    The accuracy axis spans the measured trials (and the final means), not 0-1: a front
    near 0.97 is a curve, not a flat line. Over-budget proposals, never trained, are marked
    along the bottom edge at their size.

    Args:
        records: all trials.
        front: the Pareto front (fewest parameters first).
        max_params: the budget, drawn as a vertical line.
        title: the plot title (the study name).
        final: finalized architectures: their mean final accuracy, with the spread over
            the seeds as an error bar.

    Returns:
        The figure: matplotlib's object API, no pyplot, so no GUI backend and nothing to
        close (matplotlib is imported here, not with sweep: most commands never plot).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    styles = {
        "complete": dict(color="tab:blue", marker="o", label="complete"),
        "early-stopped": dict(color="tab:gray", marker=".", label="early-stopped (last epoch)"),
    }
    measured: list[float] = []
    for state, style in styles.items():
        points = [r for r in records if r.state == state and r.params and r.val_acc is not None]
        if points:
            ax.scatter(
                [r.params for r in points], [r.val_acc for r in points], s=18, alpha=0.7, **style
            )
            measured += [r.val_acc for r in points if r.val_acc is not None]
    if front:
        xs = [r.params for r in front]
        ys = [r.val_acc for r in front]
        ax.step(xs, ys, where="post", color="tab:orange", linewidth=1.5)
        ax.scatter(xs, ys, color="tab:orange", s=36, zorder=3, label="Pareto front")
    if final:
        measured += _draw_final(ax, final)
    if measured:
        low, high = min(measured), max(measured)
        pad = max((high - low) * _MARGIN, 0.01)
        ax.set_ylim(max(low - pad, 0.0), min(high + pad, 1.0))
    over = [r for r in records if r.state == "infeasible" and r.params]
    if over:
        ax.scatter(  # x in parameters, y on the axes' bottom edge, whatever the zoom
            [r.params for r in over],
            [0.02] * len(over),
            transform=ax.get_xaxis_transform(),
            color="tab:red",
            marker="x",
            s=18,
            clip_on=False,
            label="over budget (never trained)",
        )
    ax.axvline(
        max_params, color="black", linestyle="--", linewidth=1, label=f"budget {max_params:,}"
    )
    ax.set_xscale("log")
    sizes = [r.params for r in records if r.params] + [max_params]
    ax.set_xlim(min(sizes) / 1.1, max(sizes) * 1.1)  # the edge markers do not widen it
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _draw_final(ax: Axes, final: Sequence[FinalResult]) -> list[float]:
    """The final means with their spread as error bars; the accuracies they reach."""
    means = [f.mean for f in final]
    spread = [f.std or 0.0 for f in final]
    ax.errorbar(
        [f.params for f in final],
        means,
        yerr=spread,
        fmt="D",
        color="tab:green",
        markersize=5,
        capsize=3,
        zorder=4,
        label="final mean ± sd over seeds",
    )
    return [m + sign * s for m, s in zip(means, spread, strict=True) for sign in (-1, 1)]
