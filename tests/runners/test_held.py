"""Held-trial files: what each worker holds, read back whole, and whether its holder lives."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from runners.held import (
    HeldTrial,
    all_held,
    clear_held,
    held_path,
    holder_alive,
    read_held,
    this_host,
    write_held,
)


def test_write_read_clear(tmp_path: Path) -> None:
    held = HeldTrial(os.getpid(), this_host(), "demo", trial_id=7, number=3)
    write_held(tmp_path, held)
    assert read_held(tmp_path, os.getpid()) == held
    with_run = replace(held, run_id="abc")
    write_held(tmp_path, with_run)  # replaced whole, no partial file left
    assert read_held(tmp_path, os.getpid()) == with_run
    assert [p.suffix for p in held_path(tmp_path, os.getpid()).parent.iterdir()] == [".json"]
    clear_held(tmp_path, os.getpid())
    assert read_held(tmp_path, os.getpid()) is None
    clear_held(tmp_path, os.getpid())  # twice is fine


def test_all_held_lists_one_study_and_skips_broken_files(tmp_path: Path) -> None:
    assert all_held(tmp_path, "demo") == []
    mine = HeldTrial(1, this_host(), "demo", 1, 0)
    other = HeldTrial(2, this_host(), "other", 2, 0)
    write_held(tmp_path, mine)
    write_held(tmp_path, other)
    held_path(tmp_path, 3).write_text("{not json")
    assert all_held(tmp_path, "demo") == [mine]


def test_holder_alive_follows_the_process() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert holder_alive(HeldTrial(os.getpid(), this_host(), "demo", 1, 0))
    assert not holder_alive(HeldTrial(gone.pid, this_host(), "demo", 1, 0))
    # Another host's worker cannot be checked from here: the database heartbeat covers it.
    assert holder_alive(HeldTrial(gone.pid, "elsewhere", "demo", 1, 0))
