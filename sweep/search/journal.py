"""Keeping a study's journal file readable after a crash.

Optuna's journal is one JSON record per line, appended under a lock. A power cut or a full
disk mid-append leaves a torn last line; the next append would then be glued onto it and
every later read would fail. Before the journal is opened, a torn tail is moved aside into
a backup file next to the journal (nothing is thrown away) and reported; a bad line anywhere
else is corruption this cannot mend, reported as one line naming the file and line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import BaseFileLock

from sweep.errors import SweepError


def mend_journal(path: Path, lock: BaseFileLock) -> str | None:
    """Set a torn last line aside and check every other line, under the journal's lock.

    Args:
        path: the journal file (missing or empty: nothing to do).
        lock: the lock every writer of the journal takes (so no append is mid-way).

    Returns:
        What was set aside, as one line for the user, or None when the journal was whole.

    Raises:
        SweepError: a line before the last is not a JSON record (names the file and line).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with lock:
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything up to the last newline is whole lines
        for number, line in enumerate(data[:end].splitlines(), start=1):
            try:
                json.loads(line)
            except ValueError as exc:
                raise SweepError(
                    f"{path}: line {number} is not a journal record ({exc.__class__.__name__}: "
                    f"{exc}); the journal is corrupt before its end and cannot be mended here: "
                    "restore it from a backup"
                ) from None
        if end == len(data):
            return None
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.write_bytes(data[end:])
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    return (
        f"{path}: its last line was torn ({len(data) - end} bytes, a write cut off by a crash); "
        f"set aside in {backup.name}, the study goes on with every complete record"
    )
