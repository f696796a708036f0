"""A journal torn by a crash: its tail set aside, the study goes on; corruption named."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.errors import SweepError
from sweep.search.storage import open_storage

TORN = b'{"op_code":5,"worker_id":"x","trial_id":3,"user_attr":{"val_a'


def journal_with_trials(path: Path, n: int) -> None:
    study = optuna.create_study(study_name="j", storage=open_storage(str(path)))
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(value=float(i)))


@pytest.mark.parametrize("tail", [TORN, TORN + b"\n"], ids=["no-newline", "with-newline"])
def test_a_torn_last_line_is_set_aside_and_the_study_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: bytes
) -> None:
    path = tmp_path / "optuna.journal"
    journal_with_trials(path, 2)
    whole = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(tail)  # what a power cut mid-append leaves, with or without its newline
    storage = open_storage(str(path))
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"sweep: {path}: its last line was torn ({len(tail)} bytes")
    assert "\n" not in message
    [backup] = tmp_path.glob("optuna.journal.torn-*")
    assert backup.read_bytes() == tail and path.read_bytes() == whole
    study = optuna.load_study(study_name="j", storage=storage)
    study.add_trial(optuna.trial.create_trial(value=2.0))  # the next write is a line of its own
    reread = optuna.load_study(study_name="j", storage=open_storage(str(path)))
    assert [t.value for t in reread.trials] == [0.0, 1.0, 2.0]
    assert capsys.readouterr().err == ""  # whole again: nothing to report


def test_a_bad_line_before_the_end_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    journal_with_trials(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], b"{not json\n", *lines[2:]]))
    with pytest.raises(SweepError, match=rf"{path}: line 3 is not a journal record") as error:
        open_storage(str(path))
    assert "\n" not in str(error.value)
    assert "`sweep doctor --study NAME --repair` sets that line" in str(error.value)
    assert not list(tmp_path.glob("*.torn-*")) and not list(tmp_path.glob("*.cut-*"))


def test_repair_sets_a_bad_line_and_every_later_one_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "optuna.journal"
    journal_with_trials(path, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    kept, after = lines[:2], lines[2:]
    path.write_bytes(b"".join([*kept, b"{not json\n", *after]))
    storage = open_storage(str(path), cut_corrupt=True)
    message = capsys.readouterr().err.strip()
    assert f"line 3 was not a journal record; it and the {len(after)} records after it" in message
    [cut] = tmp_path.glob("optuna.journal.cut-*")
    assert cut.read_bytes() == b"".join([b"{not json\n", *after])
    assert path.read_bytes() == b"".join(kept)
    optuna.load_study(study_name="j", storage=storage)  # readable again: what came before
