"""Opening the Optuna storage named by ``--storage`` (or the local journal file)."""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy.exc
from filelock import FileLock
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from sweep.errors import SweepError
from sweep.search.journal import mend_journal

_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
# Remote workers on a database: a worker that stops beating for GRACE_SECONDS loses its trial
# (FAILED, then retried by the stale-trial callback). A minute between beats costs nothing.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
StaleTrialCallback = Callable[[optuna.Study, FrozenTrial], None]
# What a short database or network outage raises: worth retrying, unlike a bad URL.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    ConnectionError,
    TimeoutError,
)


class JournalFlock:
    """The journal's write lock as an ``flock`` (through filelock), not Optuna's symlink.

    Optuna's default symlink lock outlives a worker killed while appending: the others then
    wait out its 30 s grace period. The kernel drops an ``flock`` when its process dies.
    It has the two methods of Optuna's (private) ``BaseJournalFileLock``.
    """

    def __init__(self, journal_path: str) -> None:
        self.file_lock = FileLock(journal_path + ".flock")

    def acquire(self) -> bool:
        """Block until this process holds the lock."""
        self.file_lock.acquire()
        return True

    def release(self) -> None:
        """Let the next writer in."""
        self.file_lock.release()


def redact(url: str) -> str:
    """Hide the password of a URL before it is printed."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(
    url: str, on_stale_trial: StaleTrialCallback | None = None, cut_corrupt: bool = False
) -> BaseStorage:
    """Open an Optuna storage.

    Args:
        url: an SQLAlchemy URL (``postgresql://user:pw@host/db``, ``sqlite:///file.db``) for
            a database, or a file path for a journal file (the default on one machine:
            SQLite under many writers answers "database is locked").
        on_stale_trial: for a database, called with each trial whose worker stopped beating,
            after Optuna failed it (workers pass one that retries the trial).
        cut_corrupt: for a journal, set a bad line before its last aside with every line
            after it (``sweep doctor --repair``), instead of refusing the journal.

    Returns:
        The storage.

    Raises:
        SweepError: the URL's scheme is unknown or the database cannot be reached.
    """
    if "://" not in url:
        path = Path(url).expanduser()
        if path.is_dir():
            raise SweepError(f"--storage: {url}: is a folder; give a journal file path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFlock(str(path))
            mended = mend_journal(path, lock.file_lock, cut_corrupt)
            if mended:
                print(f"sweep: {mended}", file=sys.stderr)
            backend = JournalFileBackend(str(path), lock_obj=lock)
            return JournalStorage(backend)
        except OSError as exc:
            raise SweepError(f"--storage: {url}: cannot open journal file ({exc})") from None
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in _RDB_SCHEMES:
        raise SweepError(
            f"--storage: {redact(url)}: unknown scheme {scheme!r}; use one of "
            f"{', '.join(_RDB_SCHEMES)} URLs or a journal file path"
        )
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" but long-standing
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=on_stale_trial,
            )
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot use it".
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"--storage: {redact(url)}: cannot connect ({reason})") from None


def study_names(storage: BaseStorage) -> list[str]:
    """Names of the studies held by a storage."""
    return [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
