"""The local journal: a worker killed while writing must not stall the others."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from sweep.search.storage import open_storage

HOLD_LOCK = """
import sys, time
from sweep.search.storage import JournalFlock
JournalFlock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_holding_the_journal_lock_does_not_block_the_next(
    tmp_path: Path,
) -> None:
    journal = str(tmp_path / "optuna.journal")
    storage = open_storage(journal)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, journal], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    began = time.monotonic()
    study = optuna.create_study(study_name="after", storage=storage)  # writes to the journal
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert time.monotonic() - began < 5  # Optuna's own symlink lock would wait out 30 s
    assert len(study.trials) == 2
