"""The live display: ETA, the running trial's family and size, batches, logging above it."""

from __future__ import annotations

import io
import logging
import sys

from rich.console import Console

from sweep.track.progress import SweepProgress, logging_above, preparing


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160, color_system=None), out


def test_the_bars_move_with_every_batch_and_the_study_bar_counts_the_running_trial() -> None:
    console, out = terminal()
    display = SweepProgress("kd_small", total=4, done=1, best=0.8, console=console)
    with display:
        display.trial_started(7, epochs=2, family="ghostnet", params=54_826)
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
        display.trials_running([(3, 1.25, "plain", 47_547), (4, 0.0, None, None)], epochs=4)
        study, trial = display._progress.tasks
        assert trial.fields["note"] == "#3 plain 47,547 1.2/4  #4 ? ? 0/4"
        assert study.completed == 2 + 1.25 / 4


def test_off_a_terminal_only_the_lines_are_printed() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40)  # a pipe: no redraws, no blank lines
    display = SweepProgress("s", total=1, done=0, best=None, console=console)
    with display:
        display.trial_started(0, epochs=1, family="dsconv", params=1_000)
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
