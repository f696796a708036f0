"""Ctrl-C (and SIGTERM) honoured at every moment of a command.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be.
When that is inside a weakref callback or a ``__del__`` (torch and Optuna run many), Python
prints "Exception ignored in ..." and carries on: the interrupt is lost and the run trains
on. So :func:`honoured` handles both signals itself: it remembers that one came, then raises
KeyboardInterrupt as usual; the long loops (batches, epochs, trials, decoding, soft labels)
call :func:`check`, which raises it again when it was swallowed. A second signal raises at
once, even inside the first one's clean-up.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending = False  # a stop signal came during this command


def _stop(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


def _on_main_thread() -> bool:
    # Python runs signal handlers in the main thread only, and only there may they be
    # replaced: elsewhere every block below runs as it is.
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handling(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """Install ``handlers`` for the block, then put back the ones they replaced."""
    if not _on_main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def honoured() -> Iterator[None]:
    """Handle SIGINT and SIGTERM for the block as one KeyboardInterrupt that cannot be lost."""
    global _pending
    if not _on_main_thread():
        yield
        return
    _pending = False
    previous_hook = sys.unraisablehook

    def unraisable(hooked: Any) -> None:
        # Swallowed on its way ("Exception ignored in ..."): check() raises it again, and
        # the command's one line says it; no traceback for it.
        if not isinstance(hooked.exc_value, KeyboardInterrupt):
            previous_hook(hooked)

    sys.unraisablehook = unraisable
    try:
        with _handling(dict.fromkeys(_STOP_SIGNALS, _stop)):
            yield
    finally:
        sys.unraisablehook = previous_hook
        _pending = False


@contextlib.contextmanager
def as_python_does() -> Iterator[None]:
    """Python's own handling of SIGINT and SIGTERM for the block, for a server that stops on
    them (``sweep ui``, ``sweep dashboard``): Ctrl-C a KeyboardInterrupt, SIGTERM the end."""
    with _handling({signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block; one that came meanwhile arrives after it.

    A second one arrives at once: the user insists, say on a call to a server that does not
    answer.
    """
    received: list[int] = []
    outer = {number: signal.getsignal(number) for number in _STOP_SIGNALS}

    def hold(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            return
        received.clear()  # arrives now, so not again after the block
        if outer[signum] is _stop:
            _stop(signum, frame)
        raise KeyboardInterrupt

    try:
        with _handling(dict.fromkeys(_STOP_SIGNALS, hold)):
            yield
    finally:
        for number in received:
            signal.raise_signal(number)  # now, to whichever handler was there before


def check() -> None:
    """Raise KeyboardInterrupt when a stop signal came and was swallowed on its way.

    Raises:
        KeyboardInterrupt: a stop signal came during this command.
    """
    if _pending:
        raise KeyboardInterrupt
