"""Riding out a short storage outage: retry with backoff, then give up loudly.

A database restart or a network blip mid-run should cost a worker a few seconds, not its
life; a storage that stays away for longer than :data:`BACKOFF_SECONDS` adds up to is a
real failure and ends the worker (the pool then replaces it, within its restart limit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sweep.search.storage import TRANSIENT_ERRORS

T = TypeVar("T")
# 1 + 2 + 4 + 8 + 16 s: about half a minute of outage is ridden out.
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0)
_log = logging.getLogger("sweep.worker")


def with_retries(
    call: Callable[[], T],
    what: str,
    delays: tuple[float, ...] = BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; on a transient storage error wait and try again, a few times.

    Args:
        call: the storage operation.
        what: what it does, for the warning line.
        delays: seconds to wait before each new attempt.
        sleep: the waiting function (tests pass a fake).

    Returns:
        What ``call`` returns.

    Raises:
        The last transient error, once every retry failed; any other error at once.
    """
    for delay in delays:
        try:
            return call()
        except TRANSIENT_ERRORS as exc:
            _log.warning("%s: %s; retrying in %.0f s", what, type(exc).__name__, delay)
            sleep(delay)
    return call()
