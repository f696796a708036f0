"""The accuracy-versus-parameters plot of a study, with the budget line and the front."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sweep.records import TrialRecord


def front_figure(
    records: Sequence[TrialRecord], front: Sequence[TrialRecord], max_params: int, title: str
) -> Figure:
    """Scatter of every trial with a parameter count, the budget line and the front.

    Args:
        records: all trials.
        front: the Pareto front (fewest parameters first).
        max_params: the budget, drawn as a vertical line.
        title: the plot title (the study name).

    Returns:
        The figure; the caller closes it.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {
        "complete": dict(color="tab:blue", marker="o", label="complete"),
        "early-stopped": dict(color="tab:gray", marker=".", label="early-stopped (last epoch)"),
    }
    for state, style in styles.items():
        points = [r for r in records if r.state == state and r.params and r.val_acc is not None]
        if points:
            ax.scatter(
                [r.params for r in points], [r.val_acc for r in points], s=18, alpha=0.7, **style
            )
    over = [r for r in records if r.state == "infeasible" and r.params]
    if over:
        ax.scatter(
            [r.params for r in over],
            [0.0] * len(over),
            color="tab:red",
            marker="x",
            s=18,
            label="over budget (never trained)",
        )
    if front:
        xs = [r.params for r in front]
        ys = [r.val_acc for r in front]
        ax.step(xs, ys, where="post", color="tab:orange", linewidth=1.5)
        ax.scatter(xs, ys, color="tab:orange", s=36, zorder=3, label="Pareto front")
    ax.axvline(
        max_params, color="black", linestyle="--", linewidth=1, label=f"budget {max_params:,}"
    )
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)  # over-budget markers sit lower right
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
