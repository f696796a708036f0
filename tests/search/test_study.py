"""Opening a study again: a resumed study proposes new settings; from scratch, the same ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import load, sweep, write_space


def params(home: Path) -> list[dict]:
    return [t.params for t in load(home, "resume").trials]


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("resume")
    space = str(write_space(tmp, "resume", food11_dir, epochs=1))
    resumed, fresh = tmp / "resumed", tmp / "fresh"
    for home, trials in ((resumed, "2"), (resumed, "4"), (fresh, "2")):
        done = sweep(home, "run", "--space", space, "--trials", trials, "--no-progress")
        assert done.returncode == 0, done.stderr
    return resumed, fresh


def test_a_resumed_seeded_study_proposes_new_settings(homes: tuple[Path, Path]) -> None:
    resumed, _ = homes
    proposed = params(resumed)
    assert len(proposed) == 4
    assert all(p not in proposed[:i] for i, p in enumerate(proposed))


def test_the_same_command_from_scratch_proposes_the_same_settings(
    homes: tuple[Path, Path],
) -> None:
    resumed, fresh = homes
    assert params(fresh) == params(resumed)[:2]
