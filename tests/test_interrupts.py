"""sweep.interrupts: Ctrl-C is honoured at every moment, even when Python swallows it."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_runs import load, start, write_space
from mlflow import MlflowClient
from optuna.trial import TrialState

from runners.held import all_held
from sweep import interrupts
from sweep.search.storage import open_storage, study_names


class _Thing:
    pass


def test_an_interrupt_swallowed_in_a_weakref_callback_is_raised_at_the_next_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with interrupts.honoured():
        thing = _Thing()
        # Python runs the handler inside the callback, where a KeyboardInterrupt is printed as
        # "Exception ignored" and lost: what let a Ctrl-C at a trial's start go unheeded.
        ref = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGINT))
        del thing
        gc.collect()
        assert ref() is None
        # Still here: the KeyboardInterrupt was swallowed on its way, and not printed.
        assert capsys.readouterr().err == ""
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    interrupts.check()  # the next command starts without it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_is_a_ctrl_c_and_nothing_is_pending_without_one() -> None:
    with interrupts.honoured():
        interrupts.check()  # nothing came: nothing raised
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):  # and it is remembered, as a Ctrl-C is
            interrupts.check()


def test_ctrl_c_inside_the_block_arrives_after_it() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the rest of the block")  # still runs: the signal is held
        reached.append("after")  # never: the held Ctrl-C arrives first
    assert reached == ["the rest of the block"]


def test_a_second_ctrl_c_inside_the_block_arrives_at_once() -> None:
    # The user insists (a store that does not answer): the block stops there.
    reached = []
    with interrupts.honoured():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("held")
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("never")
        with pytest.raises(KeyboardInterrupt):  # remembered, as any Ctrl-C is
            interrupts.check()
    assert reached == ["held"]


def test_the_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts.deferred():
        assert signal.getsignal(signal.SIGINT) is not before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# When SIGINT lands: (event, seconds after it). "start" is the process's start (imports,
# checks, opening the stores); "study" the study's creation (the parent run, the teacher, its
# soft labels); "trial" a trial taken (its start, where Python once swallowed the interrupt,
# training, the display between trials).
MOMENTS = [
    *(("start", s) for s in (0.3, 0.8, 1.5, 2.5, 3.5)),
    *(("study", s) for s in (0.0, 0.2, 0.5, 1.0, 1.5)),
    *(("trial", s) for s in (0.0, 0.05, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0)),
]
LIMIT = 30.0  # seconds from SIGINT to the exit, on a loaded machine


def _reached(event: str, home: Path, study: str) -> bool:
    if event == "start":
        return True
    if event == "study":
        journal = home / "optuna.journal"
        return journal.exists() and f'"{study}"'.encode() in journal.read_bytes()
    return bool(all_held(home, study))


def _interrupt(home: Path, space: Path, study: str, moment: tuple, progress: bool) -> tuple:
    extra = [] if progress else ["--no-progress"]
    run = start(home, "run", "--space", str(space), "--trials", "3", *extra)
    event, after = moment
    deadline = time.monotonic() + 120
    while not _reached(event, home, study) and run.poll() is None:
        assert time.monotonic() < deadline, f"{study}: never reached {event}"
        time.sleep(0.01)
    time.sleep(after)
    sent = time.monotonic()
    run.send_signal(signal.SIGINT)
    try:
        _, err = run.communicate(timeout=LIMIT + 30)
    except subprocess.TimeoutExpired:
        run.kill()
        _, err = run.communicate()
    return run.returncode, time.monotonic() - sent, err


def _home(tmp_path: Path, i: int) -> Path:
    """A fresh home where the moment is in the start-up or the teacher, else one home that
    the trial-moment runs share (as studies do): its teacher, caches and stores are made
    once, so those runs reach their trials sooner."""
    return tmp_path / ("shared" if MOMENTS[i][0] == "trial" else f"home{i}")


# The twenty moments in three tests, so none is a long test: the ten before the trials, and
# the trials' first five and last five.
PARTS = {
    "before-the-trials": [i for i, (event, _) in enumerate(MOMENTS) if event != "trial"],
    "first-second-of-the-trials": [
        i for i, (event, s) in enumerate(MOMENTS) if event == "trial" and s < 1
    ],
    "later-in-the-trials": [
        i for i, (event, s) in enumerate(MOMENTS) if event == "trial" and s >= 1
    ],
}


@pytest.mark.parametrize("part", list(PARTS))
def test_twenty_ctrl_cs_at_random_moments_each_end_the_run_cleanly(
    tmp_path: Path, food11_dir: Path, part: str
) -> None:
    chosen = PARTS[part]
    in_trials = part != "before-the-trials"
    with ThreadPoolExecutor(3) as pool:
        futures = {}
        for i in chosen:
            space = write_space(tmp_path, f"stop{i}", food11_dir, epochs=40)
            args = (_home(tmp_path, i), space, f"stop{i}", MOMENTS[i], i % 2 == 0)
            futures[i] = pool.submit(_interrupt, *args)
        results = {i: future.result() for i, future in futures.items()}
    phases = []
    for i, (code, seconds, err) in results.items():
        print(f"{MOMENTS[i]}: exit {code} after {seconds:.1f} s")
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 130, (MOMENTS[i], err)
        assert lines[-1].startswith("sweep: interrupted"), (MOMENTS[i], err)
        assert "Traceback" not in err and "Exception ignored" not in err, (MOMENTS[i], err)
        assert seconds < LIMIT, (MOMENTS[i], seconds)
        # Nothing left RUNNING, in Optuna or MLflow, whatever the moment had created.
        home = _home(tmp_path, i)
        journal = home / "optuna.journal"
        phase = "start-up"
        if journal.exists() and f"stop{i}" in study_names(open_storage(str(journal))):
            study = load(home, f"stop{i}")
            assert not [t for t in study.trials if t.state == TrialState.RUNNING], MOMENTS[i]
            phase = "trials" if study.trials else "teacher and soft labels"
        phases.append(phase)
        if (home / "mlflow.db").exists():
            client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
            experiments = [e.experiment_id for e in client.search_experiments()]
            running = client.search_runs(experiments, "attributes.status = 'RUNNING'")
            assert not running, MOMENTS[i]
    # The moments did fall in each part of a run.
    expected = {"trials"} if in_trials else {"start-up", "teacher and soft labels"}
    assert set(phases) == expected, phases
