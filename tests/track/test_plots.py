"""The front plot: every measured trial, the front as a step line, the budget as a line."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from sweep.records import TrialRecord
from sweep.track.plots import front_figure


def trial(number: int, state: str, val_acc: float | None, params: int | None) -> TrialRecord:
    return TrialRecord(number, state, val_acc, val_acc, params, None, None, "dsconv")


def test_the_front_the_others_and_the_budget_are_drawn() -> None:
    records = [
        trial(0, "complete", 0.6, 20_000),
        trial(1, "complete", 0.8, 50_000),
        trial(2, "complete", 0.7, 55_000),  # beaten by trial 1
        trial(3, "infeasible", None, 90_000),
        trial(4, "failed", None, None),
    ]
    front = [records[0], records[1]]
    figure = front_figure(records, front, 60_000, "demo")
    try:
        [ax] = figure.axes
        assert ax.get_title() == "demo" and ax.get_xscale() == "log"
        budget = [line for line in ax.get_lines() if list(line.get_xdata()) == [60_000, 60_000]]
        assert len(budget) == 1  # the vertical budget line
        step = [line for line in ax.get_lines() if list(line.get_xdata())[:2] == [20_000, 50_000]]
        assert len(step) == 1 and list(step[0].get_ydata())[:2] == [0.6, 0.8]
        points = np.concatenate([c.get_offsets() for c in ax.collections])
        assert {20_000, 50_000, 55_000} <= set(points[:, 0].tolist())
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "Pareto front" in labels
    finally:
        plt.close(figure)
