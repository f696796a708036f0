"""The bundled kd_small space as shipped: every family is proposed, trained and recorded.

The space runs as a user runs it, by name (``--space kd_small.yaml``) from a folder outside the
repository, through the CLI, on a generated food-11-shaped folder; only
the sizes are made small (32-px images, one epoch, a one-epoch teacher) and, per run, the
family choice is narrowed to one, so each family trains once. The runs share one home, so
the teacher trains once and is reused.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from cli_runs import load, sweep

FAMILIES = ["dsconv", "inverted_residual", "plain", "ghostnet", "shufflenet_v2", "mobilenet_v3"]
SMALL = [
    "--set", "dataset.image_size=32", "--set", "dataset.resize=32",
    "--set", "teacher.checkpoint=null", "--set", "teacher.epochs=1",
    "--set", "fixed.epochs=1", "--set", "fixed.batch_size=16", "--set", "fixed.num_workers=0",
    "--set", "sampler.n_startup_trials=1",
    "--set", "prune.start_epoch=0", "--set", "prune.finetune_epochs=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home the runs share: the first trains the teacher, the others reuse it."""
    return tmp_path_factory.mktemp("kd_small") / "home"


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the repository, where the user runs the command."""
    return tmp_path_factory.mktemp("user")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_proposed_and_trained(
    home: Path, elsewhere: Path, food11_dir: Path, family: str
) -> None:
    # One run a family (a test each, so none is a long test).
    done = sweep(
        home, "run", "--space", "kd_small.yaml", "--trials", "1", "--no-progress",
        "--data-dir", str(food11_dir), *SMALL, "--set", f"study=kd_{family}",
        "--set", f"params.student.family.choices=[{family}]",
        "--set", "params.prune.method.choices=[none]", cwd=elsewhere,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "kd_small.yaml"
    assert f"space: {space} (bundled with sweep)" in done.stdout.splitlines()
    study = load(home, f"kd_{family}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete, [(t.number, t.state, t.user_attrs) for t in study.trials]
    trial = complete[0]
    assert trial.params["student.family"] == family
    assert trial.user_attrs["family"] == family
    assert 0 < trial.user_attrs["params"] <= 60_000
    assert 0.0 <= trial.value <= 1.0
    assert len(list((home / "teachers").glob("*.ckpt"))) == 1  # one teacher for all six


def test_pruning_is_searched_and_planned_exactly(home: Path, food11_dir: Path) -> None:
    """kd_small searches pruning: a wide shufflenet_v2 is pruned to the budget or by a rate."""
    done = sweep(
        home, "run", "--space", "kd_small", "--trials", "3", "--no-progress",
        "--data-dir", str(food11_dir), *SMALL, "--set", "study=kd_pruned",
        "--set", "fixed.epochs=3", "--set", "params.student.family.choices=[shufflenet_v2]",
        "--set", "params.prune.method.choices=[structured]",
        "--set", "params.student.width_mult.low=1.2", "--set", "params.student.stem.low=32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    study = load(home, "kd_pruned")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete, [(t.number, t.state, t.user_attrs) for t in study.trials]
    for trial in complete:
        assert trial.params["prune.method"] == "structured"
        assert "prune.steps" in trial.params and "prune.target_params" in trial.params
        assert ("prune.rate" in trial.params) == (trial.params["prune.target_params"] is None)
        attrs = trial.user_attrs
        assert attrs["params"] <= 60_000 < attrs["initial_params"], attrs
