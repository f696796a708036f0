"""The exact count: a worker takes a trial only while finished + running < target.

"Count the trials, then create one" must be one step, or two workers both see 199 of 200
and both start a trial. The host's workers take the study's lock (an ``flock``, freed by
the kernel if its holder dies) around the count and ``study.ask``; the lock is let go once
the trial exists, as the objective starts. So the pool on one host stops at the count
exactly. Workers on other hosts use their own lock: they can overshoot by at most the
trials in flight at the moment the count is reached.

Failed and over-budget (infeasible) trials do not count as finished; a running trial that
ends that way frees its place, which is why a worker that finds every remaining place
taken waits instead of leaving.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.trial import TrialState

from sweep.records import TrialRecord
from sweep.search.pareto import record

StopCheck = Callable[[list[TrialRecord]], None]


class Claim(enum.Enum):
    """What the count allows a worker to do next."""

    STOP = "the study holds its target of finished trials"
    WAIT = "every remaining place is taken by a running trial"
    GO = "take a trial (the lock is held until the trial exists)"


class TrialGate:
    """The study's host lock plus the count check.

    Args:
        study: the study.
        target: finished trials the study should hold.
        lock_path: the study's lock file on this host.
        stop_check: raises when the study must stop before its target (only over-budget
            proposals, repeated failures: :func:`sweep.search.study.check_streaks`).
    """

    def __init__(
        self,
        study: optuna.Study,
        target: int,
        lock_path: Path,
        stop_check: StopCheck | None = None,
    ) -> None:
        self.study = study
        self.target = target
        self.stop_check = stop_check
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(lock_path))

    def counts(self) -> tuple[int, int]:
        """Finished trials (complete or early-stopped) and running trials, from the storage."""
        trials = self.study.get_trials(deepcopy=False)
        finished = sum(record(t).finished for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return finished, running

    def claim(self) -> Claim:
        """Take the lock and decide; on GO the caller holds the lock until :meth:`release`.

        Raises:
            SweepError: the study should stop (only over-budget proposals, or repeated
                failures); the lock is released.
        """
        self.lock.acquire()
        try:
            trials = self.study.get_trials(deepcopy=False)
            records = [record(t) for t in trials]
            finished = sum(r.finished for r in records)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if finished >= self.target:
                claim = Claim.STOP
            elif finished + running >= self.target:
                claim = Claim.WAIT
            else:
                if self.stop_check is not None:
                    self.stop_check(records)
                return Claim.GO
        except BaseException:
            self.release()
            raise
        self.release()
        return claim

    def release(self) -> None:
        """Let the next worker count (harmless when not held)."""
        if self.lock.is_locked:
            self.lock.release()
