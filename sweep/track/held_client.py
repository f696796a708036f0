"""An ``MlflowClient`` whose calls finish before a Ctrl-C lands.

A KeyboardInterrupt raised inside a call to an embedded (SQLite) store can leave that
connection holding the database's lock: MLflow rolls back only on ``Exception``. The same
process's next write, the one that ends the trial's run FAILED, then waits out SQLite's
timeout and fails with "database is locked", traceback and all. Artifact calls are no
exception: each first reads the run's artifact location from the store (CI caught a Ctrl-C
there, inside a trial's ``config.yaml``). So every call holds the signal back until it
returns. Sweep's artifacts are small (a student of at most 60k parameters, a config, a
figure); should a call hang (a server that does not answer), a second Ctrl-C stops it at
once (:func:`interrupts.deferred`).
"""

from __future__ import annotations

import functools
from typing import Any

from mlflow import MlflowClient

from sweep import interrupts


class HeldClient:
    """Wraps an ``MlflowClient``: every method runs under :func:`interrupts.deferred`."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def held(*args: Any, **kwargs: Any) -> Any:
            with interrupts.deferred():
                return attribute(*args, **kwargs)

        return held
