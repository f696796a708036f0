"""Tracking: the MLflow layout of a study (its parent run, a child run per trial, the views of
its runs), its front plot, the live display, and ``sweep ui``.

The names below load on first use: ``sweep ui``'s server imports
:mod:`sweep.track.ui_app` in each of its workers, which needs neither torch nor the tracker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.track.plots import front_figure
    from sweep.track.progress import SweepProgress
    from sweep.track.tracker import Tracker, check_reachable

_HOMES = {
    "SweepProgress": "sweep.track.progress",
    "Tracker": "sweep.track.tracker",
    "check_reachable": "sweep.track.tracker",
    "front_figure": "sweep.track.plots",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sweep.track' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = ["SweepProgress", "Tracker", "check_reachable", "front_figure"]
