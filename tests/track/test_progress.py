"""The live display: ETA, the running trial's family and size, batches, logging above it."""

from __future__ import annotations

import io
import itertools
import logging
import sys
import time

import pytest
from rich.console import Console

from sweep.track.progress import SweepProgress, logging_above, preparing


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160, color_system=None), out


def test_the_bars_move_with_every_batch_and_the_study_bar_counts_the_running_trial() -> None:
    console, out = terminal()
    display = SweepProgress("kd_small", total=4, done=1, best=0.8, console=console)
    with display:
        display.trial_started(7, epochs=2, family="ghostnet", params=54_826, label="trial 7")
        display.batch_done(7, epoch=1, batch=5, batches=10)
        study, trial = display._progress.tasks
        assert trial.completed == 1.5 and trial.total == 2
        assert study.completed == 1 + 1.5 / 2  # a running trial counts its fraction
        assert trial.description == "trial 7 ghostnet 54,826 params"
        assert trial.fields["note"] == "epoch 2 batch 5/10"
        display._progress.refresh()
        display.trial_finished(7, "complete", "val_acc 0.9000 54,826 params", 2, 0.9)
        assert study.completed == 2 and not trial.visible
    text = out.getvalue()
    assert "eta" in text and "ghostnet 54,826 params" in text and "epoch 2 batch 5/10" in text
    assert "trial    7 complete      val_acc 0.9000 54,826 params" in text


def test_a_pools_running_trials_show_family_size_and_epochs() -> None:
    console, _ = terminal()
    display = SweepProgress("kd_small", total=10, done=2, best=None, console=console)
    with display:
        running = [("trial 3 seed 1", 1.25, "plain", 47_547), ("trial 4", 0.0, None, None)]
        display.trials_running(running, epochs=4)
        study, trial = display._progress.tasks
        assert trial.fields["note"] == "trial 3 seed 1: plain 47,547 1.2/4  trial 4: ? ? 0/4"
        assert study.completed == 2 + 1.25 / 4


def test_off_a_terminal_only_the_lines_are_printed() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40)  # a pipe: no redraws, no blank lines
    display = SweepProgress("s", total=1, done=0, best=None, console=console)
    with display:
        display.trial_started(0, epochs=1, family="dsconv", params=1_000, label="trial 0")
        display.batch_done(0, epoch=0, batch=1, batches=1)
        line = "val_acc 0.5000 1,000 params, longer than the console"
        display.trial_finished(0, "complete", line, 1, 0.5)
    assert out.getvalue() == f"trial    0 complete      {line}\n"  # whole, unwrapped


def test_library_log_lines_go_through_the_display_while_it_is_live() -> None:
    logger = logging.getLogger("sweep.tests.library")
    handler = logging.StreamHandler(sys.__stderr__)
    logger.addHandler(handler)
    logger.propagate = False
    above = io.StringIO()
    try:
        with logging_above(above):
            assert handler.stream is above
            logger.warning("Creating initial MLflow database tables...")
        assert handler.stream is sys.__stderr__  # given back
    finally:
        logger.removeHandler(handler)
    assert above.getvalue() == "Creating initial MLflow database tables...\n"


def test_what_is_prepared_is_said_at_a_terminal_only() -> None:
    console, out = terminal()
    preparing("the teacher", console)
    assert out.getvalue() == "preparing: the teacher\n"
    piped = io.StringIO()
    preparing("the teacher", Console(file=piped))
    assert piped.getvalue() == ""  # a log gets results and errors only


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_study_eta_is_the_average_pace_and_holds_steady(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    console, _ = terminal()
    display = SweepProgress("kd_small", total=10, done=0, best=None, console=console)
    with display:
        study = display._progress.tasks[0]
        assert study.fields["eta"] is None  # nothing done yet: no guess
        etas: list[float] = []
        done = 0
        # Long and short trials, over-budget proposals (seconds, nothing done) and trials
        # stopped early at a third: what made rich's 30-second window swing.
        kinds = [(60, "complete"), (5, "infeasible"), (20, "early-stopped")] * 3
        for number, (seconds, state) in enumerate(kinds):
            if number == 3:
                del etas[:]  # the steadiness asked for: after the third trial
            display.trial_started(number, 3, "plain", 50_000, f"trial {number}")
            epochs = {"complete": 3, "early-stopped": 1, "infeasible": 0}[state]
            for epoch in range(epochs):
                for batch in (5, 10):
                    clock.now += seconds / (2 * epochs)
                    display.batch_done(number, epoch, batch, batches=10)
                    etas.append(study.fields["eta"])
            if not epochs:
                clock.now += seconds
            done += state != "infeasible"
            display.trial_finished(number, state, "", done, None)
            etas.append(study.fields["eta"])
    # Exactly the average pace: wall time over trials done, times the trials left.
    assert study.completed == 6
    assert etas[-1] == pytest.approx(clock.now / 6 * 4)
    steps = [later / earlier for earlier, later in itertools.pairwise(etas)]
    assert max(steps) < 1.5 and min(steps) > 0.5, steps


def test_the_teacher_has_a_bar_of_its_own() -> None:
    console, out = terminal()
    display = SweepProgress("kd_small", total=4, done=0, best=None, console=console)
    clock = _Clock()
    with display, pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "monotonic", clock)
        display.teacher_batch(epoch=0, epochs=3, batch=1, batches=10, batch_size=32)
        clock.now = 2.0
        display.teacher_batch(epoch=0, epochs=3, batch=5, batches=10, batch_size=32)
        _, bar = display._progress.tasks
        assert (bar.description, bar.completed, bar.total, bar.visible) == (
            "teacher resnet18",
            0.5,
            3,
            True,
        )
        assert bar.fields["note"] == "epoch 1/3 batch 5/10 64 img/s"  # 4 batches of 32 in 2 s
        display._progress.refresh()
        display.teacher_finished()
        assert not bar.visible
    assert "teacher resnet18" in out.getvalue()


def test_a_final_training_is_named_by_its_search_trial_and_seed() -> None:
    console, _ = terminal()
    display = SweepProgress("kd_small.final", total=6, done=0, best=None, console=console)
    with display:
        display.trial_started(0, epochs=2, family="plain", params=47_547, label="trial 3 seed 1")
        assert display._progress.tasks[1].description == "trial 3 seed 1 plain 47,547 params"
