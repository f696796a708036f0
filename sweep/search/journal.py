"""Keeping a study's journal file readable after a crash.

Optuna's journal is one JSON record per line, appended under a lock. A power cut or a full
disk mid-append leaves a torn last line, with or without the newline after it; the next
append would then be glued onto it, or every later read fail. Before the journal is opened,
a torn last record is moved aside into a backup file next to the journal (nothing is thrown
away) and reported. A bad line before the last is corruption that is not mended silently:
it is reported as one line naming the file and the line, and ``sweep doctor --repair`` sets
that line and every line after it aside, into a file of its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import BaseFileLock

from sweep.errors import SweepError


def mend_journal(path: Path, lock: BaseFileLock, cut_corrupt: bool = False) -> str | None:
    """Set a torn last record aside and check every other line, under the journal's lock.

    Args:
        path: the journal file (missing or empty: nothing to do).
        lock: the lock every writer of the journal takes (so no append is mid-way).
        cut_corrupt: set a bad line before the last aside too, with every line after it
            (``sweep doctor --repair``); else such a line is refused.

    Returns:
        What was set aside, as one line for the user, or None when the journal was whole.

    Raises:
        SweepError: a line before the last is not a JSON record and ``cut_corrupt`` is off
            (names the file and the line, and the command that mends it).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with lock:
        data = path.read_bytes()
        starts, bad = _first_bad_record(data)
        if bad is None:
            if data.endswith(b"\n") or not data.strip():
                return None
            bad = len(starts) - 1  # a last record with no newline after it is torn too
        start = starts[bad]
        later = len(starts) - bad - 1  # whole records after the bad line
        if later and not cut_corrupt:
            raise SweepError(
                f"{path}: line {bad + 1} is not a journal record, and {later} records follow "
                "it: the journal is corrupt before its end; `sweep doctor --study NAME "
                "--repair` sets that line and every later one aside (or restore a backup)"
            )
        kind = "cut" if later else "torn"
        backup = path.with_name(f"{path.name}.{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.write_bytes(data[start:])
        with open(path, "r+b") as handle:
            handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())
    if later:
        return (
            f"{path}: line {bad + 1} was not a journal record; it and the {later} records "
            f"after it ({len(data) - start} bytes) are set aside in {backup.name}"
        )
    return (
        f"{path}: its last line was torn ({len(data) - start} bytes, a write cut off by a "
        f"crash); set aside in {backup.name}, the study goes on with every complete record"
    )


def _first_bad_record(data: bytes) -> tuple[list[int], int | None]:
    """Where each non-empty line starts, and the index of the first that is not JSON."""
    starts: list[int] = []
    bad = None
    offset = 0
    for line in data.split(b"\n"):
        if line.strip():
            starts.append(offset)
            if bad is None:
                try:
                    json.loads(line)
                except ValueError:
                    bad = len(starts) - 1
        offset += len(line) + 1
    return starts, bad
