"""Opening a study for trials: the one setup every process that runs trials goes through.

``sweep run`` (alone or as a pool's parent) and ``sweep worker`` differ only in where the
study's settings come from; from the open :class:`~sweep.search.study.SweepSession` on, they
build the same objective and the same :class:`~runners.loop.TrialLoop`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from runners.gate import StopCheck
from runners.loop import TrialLoop
from runners.recovery import StaleTrialRetry
from sweep.paths import study_lock_path
from sweep.records import FinalResult, TrialRecord
from sweep.search.best import register_best, register_final
from sweep.search.final import FinalTrials, export_choice, refill
from sweep.search.finalize import publish_final
from sweep.search.objective import (
    NoProgress,
    Objective,
    Proposals,
    TrialContext,
    TrialProgress,
    TrialSource,
)
from sweep.search.space import SearchSpace, experiment_of
from sweep.search.study import (
    SweepSession,
    SweepSummary,
    check_streaks,
    close_sweep,
    load_records,
    open_sweep,
    refresh_front,
)
from sweep.search.study_teacher import study_teacher
from sweep.track.progress import SweepProgress, preparing


def open_session(
    space: SearchSpace,
    trials: int,
    storage_url: str | None,
    home: Path | None,
    max_retries: int,
) -> SweepSession:
    """Check the input, then create or resume the study, with stale trials retried.

    On a database storage, Optuna's heartbeat fails the trials of workers that stopped
    beating; :class:`~runners.recovery.StaleTrialRetry` then ends their runs and retries them.
    """
    stale = StaleTrialRetry()
    session = open_sweep(
        space, trials, storage_url, home, max_retries, on_stale_trial=stale, say=preparing
    )
    stale.bind(session.tracker, session.parent_id, max_retries)
    return session


def trial_loop(
    session: SweepSession,
    display: SweepProgress | None = None,
    progress: TrialProgress | None = None,
    **loop_options: Any,
) -> TrialLoop:
    """The loop that runs the session's trials in this process.

    Args:
        session: the open study.
        display: where the teacher's and the trials' epochs are shown (None: nowhere).
        progress: where the trials' batches and epochs go instead of ``display`` (a pool
            worker's progress file).
        **loop_options: :class:`~runners.loop.TrialLoop` fields beyond the session's
            (``callbacks``, ``in_pool``, ``keep_going``).
    """
    preparing(
        "the teacher (and, in the first trial, the image and soft-label caches)",
        display.console if display is not None else None,
    )
    teacher, teacher_path = study_teacher(
        session.space, session.num_classes, session.home, display
    )
    context = TrialContext(
        space=session.space,
        home=session.home,
        tracker=session.tracker,
        parent_id=session.parent_id,
        num_classes=session.num_classes,
        teacher=teacher,
        teacher_path=teacher_path,
        progress=progress or display or NoProgress(),
    )
    source, stop_check = _trials_of(session)
    return TrialLoop(
        study=session.study,
        storage=session.storage,
        tracker=session.tracker,
        parent_id=session.parent_id,
        home=session.home,
        target=session.trials,
        max_retries=session.max_retries,
        objective=Objective(context, source),
        stop_check=stop_check,
        **loop_options,
    )


def _trials_of(session: SweepSession) -> tuple[TrialSource, StopCheck]:
    """Where the session's trials come from, and when its loop must stop early.

    A search samples; a final study trains its queue, which is refilled (under the gate's
    lock) when a training was lost without a retry.
    """
    space = session.space
    if space.stage != "final":
        return Proposals(space), lambda records: check_streaks(records, space)
    search = optuna.load_study(study_name=experiment_of(space.study_name), storage=session.storage)

    def stop_check(records: list[TrialRecord]) -> None:
        check_streaks(records, space)
        refill(session.study, session.max_retries)

    return FinalTrials(space, search), stop_check


def refresh(session: SweepSession) -> list[TrialRecord]:
    """Publish where the session's study stands on the MLflow parent run (a search's front,
    or a final study's results); returns its trials."""
    if session.space.stage == "final":
        publish_final(session)
        return load_records(session.study)
    records, _ = refresh_front(session.study, session.tracker, session.parent_id, session.space)
    return records


def close_session(session: SweepSession) -> SweepSummary:
    """Publish the final front, register the best feasible model, and summarise."""
    summary = close_sweep(session)
    if summary.best is not None:
        lock = study_lock_path(session.home, session.space.study_name)
        register_best(session.study, session.tracker, summary.best, lock)
    return summary


def close_final(session: SweepSession) -> list[FinalResult]:
    """Publish a final study's results and register its best finalized model (the best
    mean's best seed); returns the results, best mean first."""
    results = publish_final(session)
    if results:
        lock = study_lock_path(session.home, session.space.study_name)
        register_final(session.study, session.tracker, *export_choice(results), lock)
    return results
