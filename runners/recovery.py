"""What happens to the trial of a worker that died: FAILED in Optuna and MLflow, then retried.

A retry is a new trial queued with the same parameters (Optuna's WAITING state, taken by
the next ``study.ask``) by Optuna's ``RetryHeartbeatStaleTrialCallback``: the system attrs
``failed_trial`` (the original trial) and ``retry_history`` are its, and the user attr
``retry_of`` names the original in ``sweep status`` and MLflow. A trial that
raised (a bug, an out-of-memory error) is not retried: it would most likely fail again.

Every function here that changes a trial's state runs under the study's host lock (see
:class:`runners.gate.TrialGate`), so the pool and a waiting worker never both fail and
retry the same trial: the journal storage does not refuse a second FAIL by itself.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import NamedTuple

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from runners.held import HeldTrial, all_held, clear_held, holder_alive
from sweep.search.final import QUEUED_ATTRS
from sweep.search.optuna_internals import set_system_attr, trial_id
from sweep.track.tracker import Tracker


class Released(NamedTuple):
    """What :func:`release_trial` did."""

    failed: bool  # the trial was failed here (it still ran)
    retried: bool  # a retry was queued


def retry_trial(study: optuna.Study, failed: FrozenTrial, max_retries: int) -> bool:
    """Queue a new trial with the failed one's parameters, unless it was retried enough.

    Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` queues it (and keeps
    the lineage in ``failed_trial`` / ``retry_history``); it would also copy every other
    attribute of the failed trial (its MLflow run, its partial results), so it is handed a
    copy that carries only the lineage and ``retry_of``.

    Args:
        study: the study.
        failed: the trial that failed (itself perhaps a retry).
        max_retries: retries allowed per original trial.

    Returns:
        Whether a retry was queued.
    """
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > max_retries:
        return False
    lineage = copy.copy(failed)
    # A final study's queued training keeps what it trains (source trial and seed).
    queued = {k: failed.user_attrs[k] for k in QUEUED_ATTRS if k in failed.user_attrs}
    lineage.user_attrs = {"retry_of": history[0], **queued}
    lineage.system_attrs = {  # copies: the callback appends to retry_history in place
        k: copy.deepcopy(v)
        for k, v in failed.system_attrs.items()
        if k in ("failed_trial", "retry_history")
    }
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retries)(study, lineage)
    return True


def release_trial(
    study: optuna.Study,
    storage: BaseStorage,
    tracker: Tracker,
    parent_id: str,
    held: HeldTrial,
    reason: str,
    max_retries: int,
) -> Released:
    """Fail a dead worker's trial if it still runs, end its MLflow run, maybe retry it.

    Args:
        study: the study.
        storage: the study's storage.
        tracker: the study's MLflow tracker.
        parent_id: the study's parent run.
        held: the trial and the worker that held it.
        reason: why it failed (shown in the progress line, kept as a system attr).
        max_retries: retries allowed per original trial (0: none).

    Returns:
        Whether the trial was failed here (False: it had ended already), and whether a retry
        was queued (False also when its retries were used up).
    """
    trial = storage.get_trial(held.trial_id)
    failed_here = False
    if trial.state == TrialState.RUNNING:
        try:
            set_system_attr(storage, held.trial_id, "fail_reason", reason)
            failed_here = storage.set_trial_state_values(held.trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # its heartbeat ran out at the same moment
            failed_here = False
    tracker.fail_running_trial(
        parent_id, held.number, held.run_id or trial.user_attrs.get("mlflow_run_id")
    )
    retried = False
    if failed_here and max_retries > 0:
        retried = retry_trial(study, storage.get_trial(held.trial_id), max_retries)
    return Released(failed_here, retried)


def reap_dead_workers(
    study: optuna.Study,
    storage: BaseStorage,
    tracker: Tracker,
    parent_id: str,
    home: Path,
    max_retries: int,
) -> list[int]:
    """Release the trials of this host's workers that died without recording them.

    Returns:
        The numbers of the trials failed here.
    """
    failed = []
    for held in all_held(home, study.study_name):
        if holder_alive(held):
            continue
        reason = f"its worker (pid {held.pid}) died"
        if release_trial(study, storage, tracker, parent_id, held, reason, max_retries).failed:
            failed.append(held.number)
        clear_held(home, held.pid)
    return failed


def fail_orphans(
    study: optuna.Study, storage: BaseStorage, tracker: Tracker, parent_id: str, home: Path
) -> list[int]:
    """Fail RUNNING trials of a journal study that no live worker holds.

    A journal file lives on one host, so every worker that can hold its trials writes its
    held file here: a RUNNING trial without one was left by a process killed before it
    could say (a pool killed whole, a worker killed between taking a trial and writing the
    file). A database study may have workers on other hosts; its heartbeat handles them.

    Returns:
        The numbers of the trials failed here.
    """
    if not isinstance(storage, JournalStorage):
        return []
    held_ids = {h.trial_id for h in all_held(home, study.study_name) if holder_alive(h)}
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        orphan_id = trial_id(trial)
        if orphan_id in held_ids:
            continue
        orphan = HeldTrial(0, "", study.study_name, orphan_id, trial.number)
        released = release_trial(
            study, storage, tracker, parent_id, orphan, "no worker holds it", 0
        )
        if released.failed:
            failed.append(trial.number)
    return failed


class StaleTrialRetry:
    """Optuna's heartbeat callback for database studies: end the MLflow run, retry the trial.

    The storage is opened before the study's settings and the tracker are known, so they
    are bound later; until then a stale trial is retried once, as ``--max-retries``'s default.
    """

    def __init__(self) -> None:
        self.tracker: Tracker | None = None
        self.parent_id: str | None = None
        self.max_retries = 1

    def bind(self, tracker: Tracker, parent_id: str, max_retries: int) -> None:
        """Attach the tracker, the parent run and the study's retry limit."""
        self.tracker, self.parent_id, self.max_retries = tracker, parent_id, max_retries

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Handle one trial that Optuna just failed for a missing heartbeat."""
        if self.tracker is not None and self.parent_id is not None:
            run_id = trial.user_attrs.get("mlflow_run_id")
            self.tracker.fail_running_trial(self.parent_id, trial.number, run_id)
        retry_trial(study, trial, self.max_retries)
