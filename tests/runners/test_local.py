"""``sweep run`` with one worker: Ctrl-C in the middle of a trial, as a user presses it."""

from __future__ import annotations

import signal
from pathlib import Path

from cli_runs import load, runs, start, wait_for_trial_with_run, write_space
from optuna.trial import TrialState


def test_ctrl_c_is_one_line_and_every_run_names_its_trial(
    tmp_path: Path, food11_dir: Path
) -> None:
    home = tmp_path / "home"
    space = write_space(tmp_path, "ctrlc", food11_dir, epochs=20)
    run = start(home, "run", "--space", str(space), "--trials", "3", "--no-progress")
    held = wait_for_trial_with_run(home, "ctrlc", run)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    # Before: Optuna's "Trial 0 failed ... KeyboardInterrupt" with a 25-55 line traceback.
    assert lines[-1] == (
        "sweep: interrupted: the running trials ended FAILED and do not count; "
        "re-run the same command to continue"
    ), err
    assert "Traceback" not in err and f"Trial {held.number} failed" not in err, err
    study = load(home, "ctrlc")
    assert [t.state for t in study.trials if t.number == held.number] == [TrialState.FAIL]
    _, found = runs(home, "ctrlc")
    children = [r for r in found if r.data.tags.get("sweep.role") == "trial"]
    by_number = {t.number: t for t in study.trials}
    for child in children:  # each run is named by the trial its tag gives
        trial = by_number[int(child.data.tags["optuna.trial"])]
        assert trial.user_attrs.get("mlflow_run_id") == child.info.run_id
        assert child.info.status != "RUNNING"
