"""Tracking: the MLflow layout of a study, its front plot, the live display.

``status`` (the ``sweep status`` tables) reads a study through :mod:`sweep.search`, which
builds on this package: import it by module path.
"""

from sweep.track.plots import front_figure
from sweep.track.progress import SweepProgress
from sweep.track.tracker import Tracker, check_reachable

__all__ = [
    "SweepProgress",
    "Tracker",
    "check_reachable",
    "front_figure",
]
