"""Which trial each worker holds: ``<home>/workers/<host>-<pid>.json``.

Optuna's heartbeat finds the trials of dead workers only on a database, and only after a
grace period. A worker therefore writes its trial here when it takes one (and its MLflow
run once that exists) and removes the file when the trial is recorded. Whoever finds the
worker dead (the pool, on its exit; another worker, while it waits) knows what to fail.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from sweep.paths import workers_dir


@dataclass(frozen=True)
class HeldTrial:
    """A trial in the hands of one worker process."""

    pid: int
    host: str
    study: str
    trial_id: int
    number: int
    run_id: str | None = None


def this_host() -> str:
    """The name the held files use for this machine."""
    return socket.gethostname()


def held_path(home: Path, pid: int) -> Path:
    """The file of worker ``pid`` on this host.

    Named by host too: containers (or hosts) sharing one home folder reuse the same pids.
    """
    return workers_dir(home) / f"{this_host()}-{pid}.json"


def write_held(home: Path, held: HeldTrial) -> None:
    """Record the trial a worker holds; readers never see half a file."""
    path = held_path(home, held.pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(held)))
    os.replace(partial, path)  # atomic on one file system


def read_held(home: Path, pid: int) -> HeldTrial | None:
    """The trial worker ``pid`` of this host holds, or None when it holds none."""
    return _read(held_path(home, pid))


def _read(path: Path) -> HeldTrial | None:
    try:
        return HeldTrial(**json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def clear_held(home: Path, pid: int) -> None:
    """Forget worker ``pid``'s trial (it was recorded, or someone failed it)."""
    held_path(home, pid).unlink(missing_ok=True)


def all_held(home: Path, study: str) -> list[HeldTrial]:
    """Every trial of ``study`` that a worker sharing this home folder holds."""
    folder = workers_dir(home)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        held = _read(path)
        if held is not None and held.study == study:
            found.append(held)
    return found


def holder_alive(held: HeldTrial) -> bool:
    """Whether the worker holding a trial still runs.

    A worker on another host (a home folder shared over NFS) cannot be checked from here
    and counts as alive: the database heartbeat covers it.
    """
    if held.host != this_host():
        return True
    try:
        os.kill(held.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
