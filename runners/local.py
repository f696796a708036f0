"""``sweep run`` with one worker: trials run in the ``sweep run`` process itself."""

from __future__ import annotations

from pathlib import Path

import optuna

from runners.session import close_session, open_session, refresh, trial_loop
from sweep.search.pareto import best_trial, record
from sweep.search.space import SearchSpace
from sweep.search.study import (
    SweepSession,
    SweepSummary,
    load_records,
    parent_running,
    trial_line,
)
from sweep.track.progress import SweepProgress


def run_sweep(
    space: SearchSpace,
    trials: int,
    storage_url: str | None = None,
    home: Path | None = None,
    show_progress: bool = True,
    max_retries: int = 1,
) -> SweepSummary:
    """Run (or continue) a study in this process until it holds ``trials`` finished trials.

    Args:
        space: the validated search space.
        trials: finished trials (complete or early-stopped) the study should hold.
        storage_url: Optuna storage; default the journal file under the home folder.
        home: the sweep home folder; default ``$SWEEP_HOME`` or ``./sweep-runs``.
        show_progress: draw the live display (it is off anyway when not on a terminal).
        max_retries: how often a trial whose worker died is tried again (workers joining
            the study read it).

    Returns:
        The summary: finished count, best feasible trial, the front, the parent run.
    """
    session = open_session(space, trials, storage_url, home, max_retries)
    with parent_running(session):
        run_trials(session, show_progress)
    return close_session(session)


def run_trials(session: SweepSession, show_progress: bool) -> None:
    """Run trials in this process until the study holds ``session.trials`` finished ones
    (a search's, or a final study's queued trainings)."""
    space = session.space
    max_params = space.defaults.budget.max_params
    records = load_records(session.study)
    best = best_trial(records, max_params, space.direction)
    display = SweepProgress(
        space.study_name,
        session.trials,
        sum(r.finished for r in records),
        best.val_acc if best else None,
        enabled=show_progress,
    )

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        records = refresh(session)
        best = best_trial(records, max_params, space.direction)
        finished = record(trial)
        display.trial_finished(
            trial.number,
            finished.state,
            trial_line(finished, trial),
            sum(r.finished for r in records),
            best.val_acc if best else None,
        )

    with display:
        trial_loop(session, display, callbacks=[on_trial_end]).run()
