"""Where sweep keeps things on one machine: ``./sweep-runs`` unless ``SWEEP_HOME`` says else."""

from __future__ import annotations

import os
from pathlib import Path


def sweep_home() -> Path:
    """The folder holding the study journal, the MLflow store, caches and teachers."""
    return Path(os.environ.get("SWEEP_HOME", "sweep-runs")).expanduser().resolve()


def default_storage(home: Path) -> str:
    """The default Optuna storage: a journal file, safe for many processes on one host."""
    return str(home / "optuna.journal")


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else an SQLite store under the home folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"


def artifact_root(home: Path) -> Path:
    """Where experiments created on the embedded store keep their artifacts."""
    return home / "mlartifacts"


def artifact_location(home: Path) -> str | None:
    """Artifact location for a new experiment: under the home folder for a local store;
    None for a tracking server, which keeps artifacts where it is configured to (S3...)."""
    if tracking_uri(home).startswith(("http://", "https://")):
        return None
    return artifact_root(home).as_uri()


def teachers_dir(home: Path) -> Path:
    """Teachers trained by sweep, one file per (dataset, teacher settings) fingerprint."""
    return home / "teachers"


def cache_dir(home: Path) -> Path:
    """Decoded images and teacher soft labels, keyed by fingerprints of their inputs."""
    return home / "cache"


def ui_log_path(home: Path) -> Path:
    """What ``sweep ui``'s MLflow server last printed (its requests, warnings, errors)."""
    return home / "ui.log"


def workers_dir(home: Path) -> Path:
    """Per-host worker bookkeeping: ``<pid>.json`` (the trial a worker holds), logs, locks."""
    return home / "workers"


def study_lock_path(home: Path, study_name: str) -> Path:
    """The lock that serialises "count the trials, then take one" among this host's workers.

    It also guards creating the study's MLflow parent run, so two processes starting the same
    study at once end with one parent.
    """
    return workers_dir(home) / f"{study_name}.lock"
