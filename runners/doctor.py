"""``sweep doctor``: what a crash can leave behind in a study, reported and, asked to, mended.

Run it while no ``sweep run`` or ``sweep worker`` works on the study (a live worker's trial
is never touched, but one caught between two trials is indistinguishable from a finished
study). It looks at:

- the journal file: a torn last line is set aside whenever the storage is opened (see
  :mod:`sweep.search.journal`), so it is reported as found and mended;
- trials left RUNNING by workers that died (their held files name them) or that no live
  worker holds (a journal study): with ``--repair`` failed in Optuna and MLflow, and a dead
  worker's trial queued again as ``sweep run`` would;
- trial runs left RUNNING in MLflow although their trial is no longer running: ended FAILED;
- the parent run left RUNNING with nothing running: ended KILLED, as after Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from runners.held import all_held, holder_alive
from runners.recovery import fail_orphans, reap_dead_workers
from sweep.paths import default_storage, study_lock_path, sweep_home, tracking_uri
from sweep.search.final import STAGE_ATTR
from sweep.search.optuna_internals import trial_id
from sweep.search.space import experiment_of
from sweep.search.storage import open_storage
from sweep.search.study import MAX_RETRIES_ATTR, check_journal, open_study
from sweep.track.tracker import Tracker


@dataclass(frozen=True)
class Checkup:
    """What ``sweep doctor`` found (and, with ``repair``, mended), by trial number."""

    study_name: str
    dead_trials: list[int]  # RUNNING, their worker gone (or held by no worker, journal)
    stale_runs: list[tuple[int, str]]  # (trial number, its MLflow run) RUNNING, run nowhere
    parent_left_running: bool
    repaired: bool

    @property
    def healthy(self) -> bool:
        """Nothing was found."""
        return not (self.dead_trials or self.stale_runs or self.parent_left_running)

    def lines(self) -> list[str]:
        """One line per thing found or mended, each naming its trial."""
        if self.healthy:
            return [f"study {self.study_name}: nothing left behind by a crash"]
        done = "mended" if self.repaired else "found"
        lines = [
            f"{done}: trial {number} RUNNING with no live worker"
            + (" (failed, and queued again while it has retries left)" if self.repaired else "")
            for number in self.dead_trials
        ]
        lines += [
            f"{done}: trial {number}'s MLflow run {run_id} RUNNING with no live trial"
            + (" (ended FAILED)" if self.repaired else "")
            for number, run_id in sorted(self.stale_runs)
        ]
        if self.parent_left_running:
            lines.append(
                f"{done}: the parent run RUNNING with nothing running"
                + (" (ended KILLED)" if self.repaired else "")
            )
        if not self.repaired:
            lines.append(f"run `sweep doctor --study {self.study_name} --repair` to mend it")
        return lines


def check_study(
    study_name: str, storage_url: str | None = None, home: Path | None = None, repair: bool = False
) -> Checkup:
    """Look for what crashes left in a study; with ``repair``, mend it.

    Raises:
        SweepError: no such study, or its storage or tracking server cannot be used.
    """
    home = home or sweep_home()
    storage_url = storage_url or default_storage(home)
    check_journal(study_name, storage_url)  # a look at no study creates no journal
    storage = open_storage(storage_url, cut_corrupt=repair)  # sets a torn tail aside
    study = open_study(study_name, storage)
    # A final study's runs live in its search study's experiment, under the same parent.
    stage = study.user_attrs.get(STAGE_ATTR, "search")
    tracker = Tracker(tracking_uri(home), experiment_of(study_name), stage=stage)
    parent_id = tracker.parent_of(study)
    held = all_held(home, study_name)
    live = {h.trial_id for h in held if holder_alive(h)}
    # A journal lives on one host, so a RUNNING trial no live worker holds is dead. On a
    # database only a trial whose held file names a dead worker of this host is known dead;
    # the others are left to the heartbeat (their workers may run on other hosts).
    known_dead = None if isinstance(storage, JournalStorage) else {h.trial_id for h in held}
    dead = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial_id(t) not in live and (known_dead is None or trial_id(t) in known_dead)
    ]
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    running -= set(dead)  # they run nowhere all the same
    # Found before anything is mended, so the report lists every mend (a dead trial's run
    # ends FAILED with its trial).
    numbered = [
        (int(run.data.tags.get("optuna.trial", -1)), run.info.run_id)
        for run in tracker.running_trial_runs(parent_id)
    ]
    stale = [(number, run_id) for number, run_id in numbered if number not in running]
    parent_left = not running and tracker.client.get_run(parent_id).info.status == "RUNNING"
    if repair:
        if dead:
            retries = int(study.user_attrs.get(MAX_RETRIES_ATTR, 1))
            with FileLock(str(study_lock_path(home, study_name))):
                reap_dead_workers(study, storage, tracker, parent_id, home, retries)
                fail_orphans(study, storage, tracker, parent_id, home)
        for _, run_id in stale:
            tracker.finish_trial(run_id, "failed")
        if parent_left:
            tracker.set_status(parent_id, "KILLED")
    return Checkup(study_name, dead, stale, parent_left, repair)
