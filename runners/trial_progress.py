"""How far a pool worker's trial has trained, for the parent's display: one small file each.

The storage records a trial's epochs as they end; a food-11 epoch on a slow device takes
minutes, so a worker also writes, at most every :data:`WRITE_SECONDS`, the fraction of
epochs its trial has done to ``<home>/progress/<host>-<pid>.json``. The pool's monitor
reads them to move its bar between epochs. Nothing depends on these files being there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runners.held import this_host

WRITE_SECONDS = 1.0


def progress_dir(home: Path) -> Path:
    """Where the workers' progress files are."""
    return home / "progress"


class EpochProgressFile:
    """A worker's ``TrialProgress``: the running trial's epochs done, as a file."""

    def __init__(self, home: Path) -> None:
        self.path = progress_dir(home) / f"{this_host()}-{os.getpid()}.json"
        self._written = -float("inf")

    def _write(self, number: int, epochs_done: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < WRITE_SECONDS:
            return
        self._written = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"trial": number, "epochs_done": epochs_done}))
        os.replace(partial, self.path)  # readers never see half a file

    def trial_started(
        self, number: int, epochs: int, family: str, params: int, label: str
    ) -> None:
        """Start the trial at 0 epochs."""
        self._write(number, 0.0, force=True)

    def batch_done(self, number: int, epoch: int, batch: int, batches: int) -> None:
        """Record ``epoch + batch / batches`` (at most every WRITE_SECONDS)."""
        self._write(number, epoch + batch / max(batches, 1))

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Record the whole epoch."""
        self._write(number, float(epoch + 1), force=True)

    def close(self) -> None:
        """Remove the file (the worker is leaving)."""
        self.path.unlink(missing_ok=True)


def read_progress(home: Path) -> dict[int, float]:
    """Trial number -> epochs done, as the workers last wrote them (unreadable files skipped)."""
    found: dict[int, float] = {}
    folder = progress_dir(home)
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
            number, done = int(record["trial"]), float(record["epochs_done"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found[number] = max(done, found.get(number, 0.0))
    return found
