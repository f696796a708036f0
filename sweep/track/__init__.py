"""Tracking: the MLflow layout of a study (its parent run, a child run per trial, the views of
its runs), its front plot, the live display, and ``sweep ui``."""

from sweep.track.plots import front_figure
from sweep.track.progress import SweepProgress
from sweep.track.tracker import Tracker, check_reachable

__all__ = [
    "SweepProgress",
    "Tracker",
    "check_reachable",
    "front_figure",
]
