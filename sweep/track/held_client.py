"""An ``MlflowClient`` whose calls finish before a Ctrl-C lands.

A KeyboardInterrupt raised inside a write to an embedded (SQLite) store leaves that
connection holding the database's write lock: MLflow rolls back only on ``Exception``. The
same process's next write, the one that ends the trial's run FAILED, then waits out
SQLite's timeout and fails with "database is locked", traceback and all. A call to the store
takes milliseconds, so each one holds the signal back until it returns. Artifact transfers
do not touch the store and may take long (a model to a remote server): a Ctrl-C stops them
at once.
"""

from __future__ import annotations

import functools
from typing import Any

from mlflow import MlflowClient

from sweep import interrupts

# Calls that move artifacts (files, or HTTP to a server's artifact proxy), not store rows.
_ARTIFACT_CALLS = frozenset(
    {
        "log_artifact",
        "log_artifacts",
        "log_text",
        "log_dict",
        "log_figure",
        "log_image",
        "download_artifacts",
        "list_artifacts",
    }
)


class HeldClient:
    """Wraps an ``MlflowClient``: every method but an artifact transfer runs under
    :func:`interrupts.deferred`."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name in _ARTIFACT_CALLS:
            return attribute

        @functools.wraps(attribute)
        def held(*args: Any, **kwargs: Any) -> Any:
            with interrupts.deferred():
                return attribute(*args, **kwargs)

        return held
