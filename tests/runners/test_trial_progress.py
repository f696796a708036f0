"""runners.trial_progress: how far a pool worker's trial has trained, for the parent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners import trial_progress
from runners.trial_progress import EpochProgressFile, progress_dir, read_progress


def test_a_worker_writes_its_trials_fraction_and_the_parent_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 0.1, 1.5, 1.6, 9.0, 9.5])
    monkeypatch.setattr(trial_progress.time, "monotonic", lambda: next(clock))
    worker = EpochProgressFile(tmp_path)
    worker.trial_started(7, 4, "plain", 47_547, "trial 7")  # t=0: written
    assert read_progress(tmp_path) == {7: 0.0}
    worker.batch_done(7, epoch=0, batch=5, batches=10)  # t=0.1: too soon, skipped
    assert read_progress(tmp_path) == {7: 0.0}
    worker.batch_done(7, epoch=1, batch=5, batches=10)  # t=1.5: written
    assert read_progress(tmp_path) == {7: 1.5}
    worker.epoch_done(7, epoch=1, metrics={"val_acc": 0.5})  # an epoch always: t=1.6
    assert read_progress(tmp_path) == {7: 2.0}
    worker.close()
    assert read_progress(tmp_path) == {}


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    folder = progress_dir(tmp_path)
    folder.mkdir()
    (folder / "a-1.json").write_text("{not json")
    (folder / "a-2.json").write_text(json.dumps({"trial": 3}))
    (folder / "a-3.json").write_text(json.dumps({"trial": 4, "epochs_done": 2.5}))
    assert read_progress(tmp_path) == {4: 2.5}
    assert read_progress(tmp_path / "elsewhere") == {}
