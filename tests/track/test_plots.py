"""The front plot: every measured trial, the front as a step line, the budget as a line."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.records import FinalResult, TrialRecord
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


def test_the_accuracy_axis_spans_the_trials_and_over_budget_sits_on_its_bottom_edge() -> None:
    records = [
        trial(0, "complete", 0.95, 20_000),
        trial(1, "complete", 0.97, 50_000),
        trial(2, "infeasible", None, 90_000),
    ]
    figure = front_figure(records, records[:2], 60_000, "demo")
    [ax] = figure.axes
    low, high = ax.get_ylim()
    assert 0.9 < low < 0.95 and 0.97 < high <= 1.0  # a curve near 0.96, not a flat line
    over = [c for c in ax.collections if c.get_label() == "over budget (never trained)"]
    [points] = over
    assert points.get_offsets().tolist() == [[90_000, 0.02]]  # 2% up the axes, at its size
    shown = points.get_offset_transform().transform([[90_000, 0.02]])[0]
    assert shown[1] == pytest.approx(ax.transAxes.transform([0, 0.02])[1])


def test_the_final_means_are_drawn_with_their_spread() -> None:
    source = trial(1, "complete", 0.97, 50_000)
    seeds = (trial(10, "complete", 0.90, 50_000), trial(11, "complete", 0.94, 50_000))
    final = FinalResult(source, seeds, (0, 1), 2)
    figure = front_figure([source], [source], 60_000, "demo", [final])
    [ax] = figure.axes
    [bars] = [c for c in ax.containers if c.get_label() == "final mean ± sd over seeds"]
    assert bars.lines[0].get_xydata().tolist() == [[50_000, pytest.approx(0.92)]]
    low, high = ax.get_ylim()
    assert low < 0.92 - final.std and high > 0.97  # the spread and the proxy both shown
