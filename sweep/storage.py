"""Opening the Optuna storage named by ``--storage`` (or the local journal file)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from sweep.errors import SweepError

_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


def redact(url: str) -> str:
    """Hide the password of a URL before it is printed."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str) -> BaseStorage:
    """Open an Optuna storage.

    Args:
        url: an SQLAlchemy URL (``postgresql://user:pw@host/db``, ``sqlite:///file.db``) for
            a database, or a file path for a journal file (the default on one machine:
            SQLite under many writers answers "database is locked").

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
            return JournalStorage(JournalFileBackend(str(path)))
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
            return RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot use it".
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"--storage: {redact(url)}: cannot connect ({reason})") from None


def study_names(storage: BaseStorage) -> list[str]:
    """Names of the studies held by a storage."""
    return [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
