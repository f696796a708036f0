"""The loop every process that runs trials goes through: count, take one, run it, repeat.

``sweep run`` in its own process, each worker of a pool and ``sweep worker`` on another
host all run this loop, so they share one notion of "done" (see :mod:`runners.gate`) and
one record of the trial each holds (see :mod:`runners.held`). A process on the same host
as others therefore never overshoots the count, whichever way it was started.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from runners.gate import Claim, StopCheck, TrialGate
from runners.held import HeldTrial, clear_held, read_held, this_host, write_held
from runners.outage import with_retries
from runners.recovery import fail_orphans, reap_dead_workers, release_trial
from sweep.paths import study_lock_path
from sweep.search.optuna_internals import trial_id
from sweep.search.storage import TRANSIENT_ERRORS
from sweep.track.tracker import Tracker

WAIT_SECONDS = 1.0
MAX_OUTAGES = 3  # storage outages in a row (each already retried with backoff) before giving up
TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
_log = logging.getLogger("sweep.worker")


class _QuietInterrupt(logging.Filter):
    """Drop Optuna's two "trial failed" warnings when the failure is Ctrl-C (or SIGTERM).

    Optuna logs it with the whole traceback (25-55 lines), then the trial's value, before the
    interrupt goes on up; the CLI then says in one line what was stopped and how to resume.
    Real failures keep their warnings and traceback.
    """

    def __init__(self) -> None:
        super().__init__()
        self.interrupted: str | None = None  # "Trial N failed" of the interrupted trial

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if isinstance(exc, KeyboardInterrupt):
            self.interrupted = message.split(" with ", 1)[0]
            return False
        return not (self.interrupted and message.startswith(self.interrupted + " with value"))


# Optuna's trial loop logs through this logger; a logger's own filter sees its records.
logging.getLogger("optuna.study._optimize").addFilter(_QuietInterrupt())


@dataclass
class TrialLoop:
    """Run trials of ``study`` in this process until it holds ``target`` finished ones.

    Attributes:
        study: the study, opened with this process's sampler.
        storage: its storage.
        tracker: the study's MLflow tracker.
        parent_id: the parent run.
        home: the sweep home folder (the host lock, held-trial files).
        target: finished trials the study should hold.
        max_retries: how often a trial whose worker died is tried again.
        objective: the trial function (:class:`sweep.search.objective.Objective`).
        stop_check: raises when the study must stop early (see :class:`TrialGate`).
        callbacks: Optuna callbacks run after each trial (progress, front).
        in_pool: a pool's worker: its parent cleans up after dead workers and orphans.
        keep_going: checked between trials; False stops the loop (a pool's parent is gone).
    """

    study: optuna.Study
    storage: BaseStorage
    tracker: Tracker
    parent_id: str
    home: Path
    target: int
    max_retries: int
    objective: Callable[[optuna.Trial], float]
    stop_check: StopCheck | None = None
    callbacks: Sequence[TrialCallback] = ()
    in_pool: bool = False
    keep_going: Callable[[], bool] = lambda: True

    def __post_init__(self) -> None:
        lock = study_lock_path(self.home, self.study.study_name)
        self.gate = TrialGate(self.study, self.target, lock, self.stop_check)
        self.held: HeldTrial | None = None
        self.tracker.on_trial_run = self._record_run

    def run(self) -> int:
        """Loop until the study holds its target; returns how many trials ran here.

        Raises:
            SweepError: the study must stop (over-budget or failure streaks).
            KeyboardInterrupt: Ctrl-C or SIGTERM; the trial in hand ends FAILED.
        """
        if not self.in_pool:
            with_retries(self._tidy, "looking for trials left by dead workers")
        ran = outages = 0
        while self.keep_going():
            claim = with_retries(self.gate.claim, "counting the study's trials")
            if claim is Claim.STOP:
                break
            if claim is Claim.WAIT:
                with_retries(self._tidy, "looking for dead workers")
                time.sleep(WAIT_SECONDS)
                continue
            try:
                self.study.optimize(
                    self._holding, n_trials=1, catch=(Exception,), callbacks=list(self.callbacks)
                )
                ran, outages = ran + 1, 0
            except TRANSIENT_ERRORS as exc:
                outages += 1
                if outages > MAX_OUTAGES:
                    raise
                _log.warning("storage unreachable during a trial (%s)", type(exc).__name__)
                with_retries(self._release_own, "failing the interrupted trial")
            finally:
                self.gate.release()
                self._forget_recorded()
                _free_device_memory()
        return ran

    def _holding(self, trial: optuna.Trial) -> float:
        """The objective, once the trial is recorded as ours and the next worker may count."""
        self.held = HeldTrial(
            pid=os.getpid(),
            host=this_host(),
            study=self.study.study_name,
            trial_id=trial_id(trial),
            number=trial.number,
        )
        write_held(self.home, self.held)
        self.gate.release()  # the trial exists and is RUNNING: the count now includes it
        return self.objective(trial)

    def _record_run(self, number: int, run_id: str) -> None:
        if self.held is not None and self.held.number == number:
            self.held = replace(self.held, run_id=run_id)
            write_held(self.home, self.held)

    def _tidy(self) -> None:
        """Free the places of trials whose workers died, so waiting cannot last forever.

        A pool's parent does this for its own workers (it sees them die first, and says so
        on the display), so its workers leave it to the parent.
        """
        if not self.in_pool:
            with self.gate.lock:
                args = (self.study, self.storage, self.tracker, self.parent_id, self.home)
                reap_dead_workers(*args, self.max_retries)
                fail_orphans(*args)
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)  # database heartbeats only

    def _release_own(self) -> None:
        """After an outage mid-trial: fail (and retry) the trial this process held."""
        held = read_held(self.home, os.getpid())
        if held is None:
            return
        with self.gate.lock:
            reason = "the storage was unreachable"
            release_trial(
                self.study,
                self.storage,
                self.tracker,
                self.parent_id,
                held,
                reason,
                self.max_retries,
            )
        clear_held(self.home, held.pid)

    def _forget_recorded(self) -> None:
        """Drop the held-trial file once the trial has an outcome in the storage.

        A trial interrupted before the objective's own clean-up began (Ctrl-C while its run
        was being created) is FAILED by Optuna but would leave its MLflow run RUNNING.
        """
        self.held = None
        held = read_held(self.home, os.getpid())
        if held is None:
            return
        try:
            state = self.storage.get_trial(held.trial_id).state
            if state == TrialState.FAIL:
                self.tracker.fail_running_trial(self.parent_id, held.number, held.run_id)
            if state.is_finished():
                clear_held(self.home, held.pid)
        except Exception:  # noqa: BLE001 - unreadable now: whoever finds us dead decides later
            pass


def _free_device_memory() -> None:
    """Give back what a trial left on the GPU (an out-of-memory trial leaves the most)."""
    gc.collect()
    torch = sys.modules.get("torch")  # a process that never imported torch holds no GPU memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
