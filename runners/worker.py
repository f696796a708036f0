"""One worker: load a study from shared storage and run trials until it holds its target.

The same code serves the pool's processes and ``sweep worker`` on another host. Everything
a worker needs comes from the storage: the search space and the target count (user attrs
that ``sweep run`` sets) and the MLflow parent run, which workers only read. Settings that
differ per host (where the data lives) can be overridden with ``--set``/``--data-dir``.
"""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.storages import BaseStorage

from runners.held import this_host
from runners.recovery import StaleTrialRetry
from runners.session import refresh, trial_loop
from runners.slots import THREADS_ENV
from runners.trial_progress import EpochProgressFile
from sweep.errors import SweepError
from sweep.paths import artifact_location, default_storage, sweep_home, tracking_uri
from sweep.search.preflight import preflight
from sweep.search.space import SearchSpace
from sweep.search.storage import open_storage
from sweep.search.study import (
    MAX_RETRIES_ATTR,
    SPACE_ATTR,
    TARGET_ATTR,
    StudyPlace,
    SweepSession,
    check_journal,
    open_study,
    process_seed,
    session_of,
    stored_space,
    with_seed,
)
from sweep.track.tracker import Tracker

# Set by the pool to its own pid: a worker whose parent is gone stops after its trial.
POOL_PARENT_ENV = "SWEEP_POOL_PARENT"


@dataclass(frozen=True)
class WorkerSummary:
    """What one worker did."""

    study_name: str
    trials_run: int
    finished: int
    target: int


def run_worker(
    study_name: str,
    storage_url: str | None = None,
    home: Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
) -> WorkerSummary:
    """Run trials of a study that ``sweep run`` started until it holds its target.

    Args:
        study_name: the study.
        storage_url: its Optuna storage; default the journal file under the home folder.
        home: the sweep home folder (caches, teachers, held-trial files).
        overrides: ``--set key=value`` changes to the study's space on this host.
        data_dir: shorthand for ``--set dataset.root=DIR``.

    Returns:
        How many trials this worker ran and where the study stands.

    Raises:
        SweepError: the study, its target or its parent run cannot be found, or the study
            must stop (over-budget or failure streaks).
    """
    with stop_on_sigterm():  # `docker stop`, the pool: stop like Ctrl-C
        return _work(study_name, storage_url, home or sweep_home(), overrides, data_dir)


def _work(
    study_name: str,
    storage_url: str | None,
    home: Path,
    overrides: Sequence[str],
    data_dir: str | None,
) -> WorkerSummary:
    threads = os.environ.get(THREADS_ENV)
    if threads:  # the pool's share of the cores for this worker
        torch.set_num_threads(int(threads))
    session = _join(study_name, storage_url or default_storage(home), home, overrides, data_dir)
    pool_parent = os.environ.get(POOL_PARENT_ENV)
    # In a pool, the parent's display reads how far this worker's trial has trained.
    progress = EpochProgressFile(home) if pool_parent is not None else None
    loop = trial_loop(
        session,
        progress=progress,
        in_pool=pool_parent is not None,
        keep_going=lambda: pool_parent is None or os.getppid() == int(pool_parent),
    )
    try:
        ran = loop.run()
    finally:
        if progress is not None:
            progress.close()
    finished, _ = loop.gate.counts()
    if pool_parent is None:  # a pool's parent keeps the front; alone, keep it here
        refresh(session)
    return WorkerSummary(study_name, ran, finished, session.trials)


def _join(
    study_name: str,
    storage_url: str,
    home: Path,
    overrides: Sequence[str],
    data_dir: str | None,
) -> SweepSession:
    """Open a study that ``sweep run`` started, with its settings and its MLflow parent run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_journal(study_name, storage_url)  # joining no study creates no journal
    stale = StaleTrialRetry()
    storage = open_storage(storage_url, on_stale_trial=stale)
    study = open_study(study_name, storage)
    space, _, max_retries = study_settings(study, overrides, data_dir)
    checked = preflight(space, home)
    tracker = Tracker(
        tracking_uri(home), space.experiment_name, artifact_location(home), stage=space.stage
    )
    parent_id = tracker.parent_of(study)
    stale.bind(tracker, parent_id, max_retries)
    place = StudyPlace(home, storage_url, storage)
    return session_of(_own_seed(space, storage), place, tracker, parent_id, checked.num_classes)


def study_settings(
    study: optuna.Study, overrides: Sequence[str], data_dir: str | None
) -> tuple[SearchSpace, int, int]:
    """The space, target count and retry limit that ``sweep run`` stored in the study.

    Raises:
        SweepError: the study was not started by ``sweep run`` (no space or target).
    """
    attrs = study.user_attrs
    if SPACE_ATTR not in attrs or TARGET_ATTR not in attrs:
        raise SweepError(
            f"--study: {study.study_name}: has no search space or target trial count; "
            f"start it with `sweep run --space FILE --trials N` first"
        )
    space = stored_space(study, overrides, data_dir)
    return space, int(attrs[TARGET_ATTR]), int(attrs.get(MAX_RETRIES_ATTR, 1))


def _own_seed(space: SearchSpace, storage: BaseStorage) -> SearchSpace:
    """The space with a seed of this worker's own (recorded on each trial it runs).

    Workers sharing the space's seed would all draw the same random startup trials.
    """
    seed = process_seed(space, storage)
    if seed is None:
        return space
    salt = zlib.crc32(f"{this_host()}:{os.getpid()}".encode())
    return with_seed(space, (seed + salt) % 2**31)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM as Ctrl-C for the block: the trial in hand ends FAILED, not RUNNING."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
