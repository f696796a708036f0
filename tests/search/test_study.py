"""Opening a study again: a resumed study proposes new settings; from scratch, the same ones."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from cli_runs import load, sweep, write_space

from sweep.search.space import load_space
from sweep.search.study import StudyPlace, open_sweep, session_of


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


def test_processes_opening_a_study_together_draw_apart(
    tmp_path: Path, food11_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = load_space(str(write_space(tmp_path, "together", food11_dir, epochs=1)))
    home = tmp_path / "home"
    # Four `sweep run` processes that open the fresh study before any of them proposes.
    sessions = [open_sweep(space, 8, home=home) for _ in range(4)]
    proposed = []
    for session in sessions:
        trial = session.study.ask()
        proposed.append(tuple(sorted(session.space.suggest(trial).items())))
        session.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    seeds = [session.space.sampler["seed"] for session in sessions]
    assert seeds[0] == 0  # the first keeps the space's seed: the same command, the same trials
    assert len(set(seeds)) == 4
    assert len(set(proposed)) >= 3


def test_a_session_is_the_study_as_its_opener_stored_it(
    tmp_path: Path, food11_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = load_space(str(write_space(tmp_path, "stored", food11_dir, epochs=1)))
    opened = open_sweep(space, 7, home=tmp_path / "home", max_retries=3)
    # Another process (a worker, a later finalize) opening it reads the same target and
    # retry limit from the study, and its sampler from the space it is given.
    place = StudyPlace(opened.home, opened.storage_url, opened.storage)
    joined = session_of(opened.space, place, opened.tracker, opened.parent_id, 3)
    assert (joined.trials, joined.max_retries) == (7, 3)
    assert joined.study.study_name == opened.study.study_name == "stored"
    assert joined.study.sampler.__class__ is opened.study.sampler.__class__
