"""The live display of a sweep: trials done/total with an ETA, the best accuracy so far, and
the running trial (family, size, epoch, batches), moving with every training batch."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def preparing(what: str, console: Console | None = None) -> None:
    """Tell a person at a terminal what is being prepared (data, teacher, caches).

    Off a terminal nothing is printed: a log or a pipe gets results and errors only (bad
    input stays one line on stderr).
    """
    console = console or Console(stderr=True)
    if console.is_terminal:
        console.print(f"preparing: {what}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def logging_above(stream: TextIO) -> Iterator[None]:
    """Send every logging handler that writes to the terminal through ``stream`` meanwhile.

    A library's handler (MLflow's "Creating initial MLflow database tables", alembic's
    migrations) keeps the stderr it found when it was made; writing there directly would tear
    the live bars. Through the display's stream its lines print above them instead.
    """
    handlers: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if type(handler) is logging.StreamHandler and handler.stream in (
                sys.__stderr__,
                sys.__stdout__,
            ):
                handlers.append((handler, handler.setStream(stream)))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for handler, previous in handlers:
            handler.setStream(previous)


class SweepProgress:
    """A rich progress display with one bar for the study and one for the running trial.

    The study bar counts finished trials plus the running trial's fraction, so its time
    remaining follows training as it goes. Use as a context manager; it implements the
    objective's ``TrialProgress`` protocol.
    """

    def __init__(
        self,
        study_name: str,
        total: int,
        done: int,
        best: float | None,
        enabled: bool = True,
        console: Console | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            # A pipe or CI log gets no redraws, only the lines printed below.
            disable=not (enabled and self.console.is_terminal),
        )
        self._best = best
        self._done = done
        self._epochs = 1
        self._study = self._progress.add_task(
            f"{study_name} trials", total=total, completed=done, note=self._best_note()
        )
        self._trial = self._progress.add_task("trial", total=1, visible=False, note="")
        self._logging: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()

    def _best_note(self) -> str:
        return "best: -" if self._best is None else f"best: {self._best:.4f}"

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        # While the bars are live, sys.stderr is rich's proxy, which prints above them.
        self._logging = logging_above(sys.stderr)
        self._logging.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._logging.__exit__(exc_type, exc, tb)
        self._progress.stop()

    def trial_started(self, number: int, epochs: int, family: str, params: int) -> None:
        """Show a fresh bar for trial ``number``: its family and size, over its epochs."""
        self._epochs = max(epochs, 1)
        self._progress.reset(
            self._trial,
            total=self._epochs,
            visible=True,
            description=f"trial {number} {family} {params:,} params",
            note="epoch 1",
        )

    def batch_done(self, number: int, epoch: int, batch: int, batches: int) -> None:
        """Move the trial's bar (and the study's) by one training batch."""
        fraction = epoch + batch / max(batches, 1)
        self._progress.update(
            self._trial, completed=fraction, note=f"epoch {epoch + 1} batch {batch}/{batches}"
        )
        self._progress.update(self._study, completed=self._done + fraction / self._epochs)

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Show the epoch's validation accuracy on the trial's bar."""
        note = f"epoch {epoch + 1} val_acc {metrics['val_acc']:.4f}"
        self._progress.update(self._trial, completed=epoch + 1, note=note)

    def trials_running(
        self, running: Sequence[tuple[int, float, str | None, int | None]], epochs: int
    ) -> None:
        """Show a pool's trials in flight: one bar over all their epochs.

        Args:
            running: ``(trial number, epochs done, family, parameters)`` of each running
                trial; epochs done may be a fraction (between epochs), family and
                parameters are None until the trial has checked its budget.
            epochs: epochs a trial trains for.
        """
        if not running:
            self._progress.update(self._trial, visible=False)
            return
        done = sum(d for _, d, _, _ in running)
        self._progress.update(
            self._trial,
            total=max(epochs, 1) * len(running),
            completed=done,
            visible=True,
            description=f"{len(running)} running",
            note="  ".join(
                f"#{number} {family or '?'} {f'{params:,}' if params else '?'} "
                f"{round(d, 1):g}/{epochs}"
                for number, d, family, params in running
            ),
        )
        self._progress.update(self._study, completed=self._done + done / max(epochs, 1))

    def note(self, line: str) -> None:
        """Print one line above the bars (a worker restarted, a trial retried)."""
        self.console.print(line, highlight=False, soft_wrap=True)

    def trial_finished(
        self, number: int, state: str, line: str, done: int, best: float | None
    ) -> None:
        """Print one line for the finished trial and move the study bar."""
        self._best, self._done = best, done
        self._progress.update(self._study, completed=done, note=self._best_note())
        self._progress.update(self._trial, visible=False)
        self.note(f"trial {number:>4} {state:<13} {line}")
