"""``sweep worker``: what it reads from a study that ``sweep run`` started, and outages.

Joining a running study end to end is in ``test_pool.py``, which shares its home folder.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from cli_runs import write_space

from runners.outage import with_retries
from runners.worker import study_settings
from sweep.errors import SweepError
from sweep.search.space import load_space
from sweep.search.storage import open_storage
from sweep.search.study import SPACE_ATTR, TARGET_ATTR


def test_worker_reads_space_and_target_and_applies_host_overrides(
    tmp_path: Path, food11_dir: Path
) -> None:
    space = load_space(write_space(tmp_path, "attrs", food11_dir, epochs=3))
    study = optuna.create_study(study_name="attrs", storage=open_storage(str(tmp_path / "j")))
    with pytest.raises(SweepError, match="start it with `sweep run"):
        study_settings(study, [], None)
    study.set_user_attr(SPACE_ATTR, space.document)
    study.set_user_attr(TARGET_ATTR, 7)
    read, target, retries = study_settings(study, ["fixed.epochs=5"], "/elsewhere/food11")
    assert (target, retries) == (7, 1)
    assert read.study_name == "attrs" and read.params == space.params
    cfg = read.defaults
    assert cfg.train.epochs == 5 and cfg.dataset.root == "/elsewhere/food11"


def test_with_retries_rides_out_a_short_outage_and_gives_up_on_a_long_one() -> None:
    waits: list[float] = []
    calls = iter([ConnectionError(), optuna.exceptions.StorageInternalError("db"), "ok"])

    def flaky() -> str:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return result

    assert with_retries(flaky, "reading", delays=(1.0, 2.0, 4.0), sleep=waits.append) == "ok"
    assert waits == [1.0, 2.0]

    def down() -> str:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        with_retries(down, "reading", delays=(1.0, 2.0), sleep=waits.append)

    def bug() -> str:
        raise ValueError("not an outage")

    with pytest.raises(ValueError):  # only outages are retried
        with_retries(bug, "reading", delays=(1.0,), sleep=lambda s: pytest.fail("slept"))
