"""The live display of a sweep: trials done/total, best accuracy so far, the current epoch."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class SweepProgress:
    """A rich progress display with one bar for the study and one for the running trial.

    Use as a context manager; it implements the objective's ``TrialProgress`` protocol.
    """

    def __init__(
        self, study_name: str, total: int, done: int, best: float | None, enabled: bool = True
    ) -> None:
        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
            # A pipe or CI log gets no redraws, only the lines printed below.
            disable=not (enabled and self.console.is_terminal),
        )
        self._best = best
        self._study = self._progress.add_task(
            f"{study_name} trials", total=total, completed=done, note=self._best_note()
        )
        self._trial = self._progress.add_task("trial", total=1, visible=False, note="")

    def _best_note(self) -> str:
        return "best: -" if self._best is None else f"best: {self._best:.4f}"

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def trial_started(self, number: int, epochs: int) -> None:
        """Show a fresh epoch bar for trial ``number``."""
        self._progress.reset(
            self._trial, total=epochs, visible=True, description=f"trial {number} epochs", note=""
        )

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Advance the epoch bar and show the epoch's validation accuracy."""
        self._progress.update(
            self._trial, completed=epoch + 1, note=f"val_acc {metrics['val_acc']:.4f}"
        )

    def trials_running(self, running: Sequence[tuple[int, int]], epochs: int) -> None:
        """Show a pool's trials in flight: one bar over all their epochs.

        Args:
            running: ``(trial number, epochs done)`` of each running trial.
            epochs: epochs a trial trains for.
        """
        if not running:
            self._progress.update(self._trial, visible=False)
            return
        self._progress.update(
            self._trial,
            total=max(epochs, 1) * len(running),
            completed=sum(done for _, done in running),
            visible=True,
            description=f"{len(running)} running",
            note=" ".join(f"#{number} {done}/{epochs}" for number, done in running),
        )

    def note(self, line: str) -> None:
        """Print one line above the bars (a worker restarted, a trial retried)."""
        self.console.print(line, highlight=False)

    def trial_finished(
        self, number: int, state: str, line: str, done: int, best: float | None
    ) -> None:
        """Print one line for the finished trial and move the study bar."""
        self._best = best
        self._progress.update(self._study, completed=done, note=self._best_note())
        self._progress.update(self._trial, visible=False)
        self.console.print(f"trial {number:>4} {state:<13} {line}", highlight=False)
