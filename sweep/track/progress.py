"""The live display of a sweep: trials done/total with an ETA, the best accuracy so far, and
the running trial (family, size, epoch, batches), moving with every training batch."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


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


class _Remaining(TimeRemainingColumn):
    """Time left: a task's own ``eta`` field when it has one (the study's), else rich's
    estimate from the task's recent speed (a trial's or the teacher's, whose batches are alike).
    """

    def render(self, task: Task) -> Text:
        if "eta" not in task.fields:
            return super().render(task)
        eta = task.fields["eta"]
        shown = "-:--:--" if eta is None else str(timedelta(seconds=round(eta)))
        return Text(shown, style="progress.remaining")


class SweepProgress:
    """A rich progress display with one bar for the study and one for the running trial.

    The study bar counts finished trials plus the running trial's fraction. Its time left is
    the average pace since this process's first trial started (wall seconds per trial done,
    so over-budget and early-stopped trials count for what they cost and a pool's workers
    divide it): rich's own estimate, from the last 30 seconds' speed, swung 8:32 -> 17:59 ->
    6:59 within two minutes as short and long trials came and went. While the study's
    teacher trains, the second bar is the teacher's. Use as a context manager; it implements
    the objective's ``TrialProgress`` protocol.
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
            _Remaining(),
            console=self.console,
            # A pipe or CI log gets no redraws, only the lines printed below.
            disable=not (enabled and self.console.is_terminal),
        )
        self._best = best
        self._done = done
        self._total = total
        self._completed = float(done)  # the study bar: finished trials + the running fraction
        self._epochs = 1
        self._pace: tuple[float, float] | None = None  # (clock, trials done) at the first start
        self._teacher: tuple[float, int] | None = None  # (clock, batches) at its first batch
        self._study = self._progress.add_task(
            f"{study_name} trials", total=total, completed=done, note=self._best_note(), eta=None
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

    def trial_started(
        self, number: int, epochs: int, family: str, params: int, label: str
    ) -> None:
        """Show a fresh bar for trial ``number``, called ``label`` (``trial N``, or for a
        final training ``trial S seed K``): its family and size, over its epochs."""
        self._epochs = max(epochs, 1)
        self._start_pace()
        self._progress.reset(
            self._trial,
            total=self._epochs,
            visible=True,
            description=f"{label} {family} {params:,} params",
            note="epoch 1",
        )

    def batch_done(self, number: int, epoch: int, batch: int, batches: int) -> None:
        """Move the trial's bar (and the study's) by one training batch."""
        fraction = epoch + batch / max(batches, 1)
        self._progress.update(
            self._trial, completed=fraction, note=f"epoch {epoch + 1} batch {batch}/{batches}"
        )
        self._study_at(self._done + fraction / self._epochs)

    def _start_pace(self) -> None:
        if self._pace is None:
            self._pace = (time.monotonic(), self._completed)

    def _study_at(self, completed: float) -> None:
        """Move the study bar, with the time left at the average pace so far."""
        eta = None
        if self._pace is not None:
            started, done_then = self._pace
            done = completed - done_then
            if done > 0:
                pace = (time.monotonic() - started) / done
                eta = pace * max(self._total - completed, 0.0)
        self._completed = completed
        self._progress.update(self._study, completed=completed, eta=eta)

    def teacher_batch(
        self, epoch: int, epochs: int, batch: int, batches: int, batch_size: int
    ) -> None:
        """Move the teacher's bar: epochs, batches, images a second and its own time left."""
        done = epoch * batches + batch
        now = time.monotonic()
        if self._teacher is None:
            self._teacher = (now, done)
            self._progress.reset(
                self._trial, total=max(epochs, 1), visible=True, description="teacher resnet18"
            )
        started, done_then = self._teacher
        speed = ""
        if now > started and done > done_then:
            speed = f" {(done - done_then) * batch_size / (now - started):,.0f} img/s"
        note = f"epoch {epoch + 1}/{epochs} batch {batch}/{batches}{speed}"
        self._progress.update(self._trial, completed=epoch + batch / max(batches, 1), note=note)

    def teacher_finished(self) -> None:
        """Hide the teacher's bar (the trials' takes its place)."""
        if self._teacher is not None:
            self._teacher = None
            self._progress.update(self._trial, visible=False)

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Show the epoch's validation accuracy on the trial's bar."""
        note = f"epoch {epoch + 1} val_acc {metrics['val_acc']:.4f}"
        self._progress.update(self._trial, completed=epoch + 1, note=note)

    def trials_running(
        self, running: Sequence[tuple[str, float, str | None, int | None]], epochs: int
    ) -> None:
        """Show a pool's trials in flight: one bar over all their epochs.

        Args:
            running: ``(label, epochs done, family, parameters)`` of each running trial
                (``trial 3``, ``trial 3 seed 1``); epochs done may be a fraction (between
                epochs), family and parameters are None until the trial has checked its
                budget.
            epochs: epochs a trial trains for.
        """
        if not running:
            self._progress.update(self._trial, visible=False)
            return
        self._start_pace()
        done = sum(d for _, d, _, _ in running)
        self._progress.update(
            self._trial,
            total=max(epochs, 1) * len(running),
            completed=done,
            visible=True,
            description=f"{len(running)} running",
            note="  ".join(
                f"{label}: {family or '?'} {f'{params:,}' if params else '?'} "
                f"{round(d, 1):g}/{epochs}"
                for label, d, family, params in running
            ),
        )
        self._study_at(self._done + done / max(epochs, 1))

    def note(self, line: str) -> None:
        """Print one line above the bars (a worker restarted, a trial retried)."""
        self.console.print(line, highlight=False, soft_wrap=True)

    def trial_finished(
        self, number: int, state: str, line: str, done: int, best: float | None
    ) -> None:
        """Print one line for the finished trial and move the study bar."""
        self._best, self._done = best, done
        self._progress.update(self._study, note=self._best_note())
        self._study_at(done)
        self._progress.update(self._trial, visible=False)
        self.note(f"trial {number:>4} {state:<13} {line}")
