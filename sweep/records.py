"""The plain records that the search and tracking share: one trial's row, one finalized
architecture's results. No Optuna, no MLflow: :mod:`sweep.search.pareto` builds them from the
storage, :mod:`sweep.track` draws and logs them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

STATES = ("complete", "early-stopped", "infeasible", "duplicate", "failed", "running")


@dataclass(frozen=True)
class TrialRecord:
    """What the front, the status table and export need to know of one trial."""

    number: int
    state: str
    value: float | None
    val_acc: float | None
    params: int | None
    macs: int | None
    run_id: str | None
    family: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Counts toward ``--trials``: trained to the end or stopped early."""
        return self.state in ("complete", "early-stopped")


@dataclass(frozen=True)
class FinalResult:
    """One finalized architecture: its search trial and its final trainings so far."""

    source: TrialRecord  # the search trial: proxy score, parameters, family
    runs: tuple[TrialRecord, ...]  # its complete final trainings
    seeds: tuple[int, ...]  # their seeds, in the order of ``runs``
    wanted: int  # seeds asked for

    @cached_property
    def mean(self) -> float:
        """Mean final validation accuracy over the seeds finished."""
        return statistics.fmean(r.val_acc or 0.0 for r in self.runs)

    @cached_property
    def std(self) -> float | None:
        """Sample standard deviation over the seeds (None with one seed)."""
        if len(self.runs) < 2:
            return None
        return statistics.stdev(r.val_acc or 0.0 for r in self.runs)

    @property
    def params(self) -> int:
        """The architecture's parameter count (the same at both fidelities)."""
        return self.runs[0].params or self.source.params or 0

    @property
    def macs(self) -> int | None:
        """Multiply-adds at the final image size."""
        return self.runs[0].macs

    def best_seed(self) -> tuple[int, TrialRecord]:
        """The seed with the best validation accuracy, and its training."""
        index = max(range(len(self.runs)), key=lambda i: (self.runs[i].val_acc or 0.0, -i))
        return self.seeds[index], self.runs[index]
