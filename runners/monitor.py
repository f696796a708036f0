"""The pool's one progress display, drawn by the parent from what the storage holds.

Workers print nothing to the terminal; the parent reads the study every poll and shows
trials done/total, the best feasible accuracy, one line per trial as it ends, and the
epochs of the trials in flight (their reported intermediate values, and between epochs the
workers' progress files, :mod:`runners.trial_progress`). It also keeps the
MLflow parent's front fresh: after a trial completes, at most every
:data:`FRONT_REFRESH_SECONDS` (drawing and uploading the plot costs about a second of CPU,
which K workers finishing trials would otherwise make K times as often), and at the end.
"""

from __future__ import annotations

import time
from types import TracebackType

from optuna.trial import TrialState

from runners.session import refresh
from runners.trial_progress import read_progress
from sweep.search.final import trial_label
from sweep.search.pareto import best_trial, record
from sweep.search.study import SweepSession, load_records, trial_line
from sweep.track.progress import SweepProgress

FRONT_REFRESH_SECONDS = 30.0


class PoolMonitor:
    """Progress of a study whose trials run in other processes.

    Args:
        session: the open study.
        show_progress: draw the live bars (trial lines are printed either way).
    """

    def __init__(self, session: SweepSession, show_progress: bool) -> None:
        self.session = session
        space = session.space
        base = space.defaults
        self.epochs = base.train.epochs
        self.max_params = base.budget.max_params
        records = load_records(session.study)
        best = best_trial(records, self.max_params, space.direction)
        # Trials that ended before this run are history, not news.
        self.seen = {r.number for r in records if r.state != "running"}
        self.front_stale = False
        self.front_refreshed = 0.0
        self.finished = sum(r.finished for r in records)
        self.display = SweepProgress(
            space.study_name,
            session.trials,
            self.finished,
            best.val_acc if best else None,
            enabled=show_progress,
        )

    def __enter__(self) -> PoolMonitor:
        self.display.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.display.__exit__(exc_type, exc, tb)

    def done(self) -> bool:
        """Whether the study holds its target of finished trials (as of the last update)."""
        self.finished = sum(r.finished for r in load_records(self.session.study))
        return self.finished >= self.session.trials

    def update(self) -> None:
        """Read the storage once: print trials that ended, redraw the bars."""
        s = self.session
        trials = s.study.get_trials(deepcopy=False)
        ended = [t for t in trials if t.state.is_finished() and t.number not in self.seen]
        records = [record(t) for t in trials]
        self.front_stale |= any(t.state == TrialState.COMPLETE for t in ended)
        if self.front_stale and time.monotonic() - self.front_refreshed >= FRONT_REFRESH_SECONDS:
            records = refresh(s)
            self.front_stale, self.front_refreshed = False, time.monotonic()
        best = best_trial(records, self.max_params, s.space.direction)
        self.finished = sum(r.finished for r in records)
        for trial in sorted(ended, key=lambda t: t.number):
            self.seen.add(trial.number)
            self.display.trial_finished(
                trial.number,
                record(trial).state,
                trial_line(record(trial), trial),
                self.finished,
                best.val_acc if best else None,
            )
        within = read_progress(s.home)  # between epochs, from the workers' progress files
        running = [
            (
                trial_label(t),
                max(float(len(t.intermediate_values)), within.get(t.number, 0.0)),
                t.user_attrs.get("family"),
                t.user_attrs.get("params"),
            )
            for t in trials
            if t.state == TrialState.RUNNING
        ]
        self.display.trials_running(running, self.epochs)
