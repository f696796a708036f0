"""The study's teacher: whether any trial of a space may distil, and if so the teacher
(:func:`sweep.teacher.store.ensure_teacher`), shown on the study's display while it trains.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sweep.distill.base import distiller_class
from sweep.search.space import SearchSpace
from sweep.teacher.store import ensure_teacher
from sweep.track.progress import SweepProgress


def study_teacher(
    space: SearchSpace, num_classes: int, home: Path, display: SweepProgress | None = None
) -> tuple[torch.nn.Module | None, Path | None]:
    """The study's teacher when any trial may distil (trained here once if needed).

    Args:
        space: the search space.
        num_classes: classes of the data set.
        home: the sweep home folder.
        display: shows the teacher's bar and a line an epoch while it trains; None shows
            nothing.

    Returns:
        The teacher and its checkpoint, or ``(None, None)`` when no trial distils.
    """
    base = space.defaults
    if not _may_distil(space):
        return None, None

    def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        if display is not None:
            display.note(f"teacher epoch {epoch + 1}/{epochs} val_acc {metrics['val_acc']:.4f}")

    try:
        return ensure_teacher(
            base, num_classes, home, on_epoch, display.teacher_batch if display else None
        )
    finally:
        if display is not None:
            display.teacher_finished()


def _may_distil(space: SearchSpace) -> bool:
    """Whether any trial of the space may need the teacher (or an assistant made from it)."""
    searched = {p.name for p in space.params}
    if searched & {"kd.alpha", "kd.method"}:
        return True
    base = space.defaults
    return distiller_class(base.kd.method).needs_teacher(base)
