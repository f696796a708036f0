"""sweep.search.fidelity: a search trial's config at proxy fidelity, the final one at full.

The stages change how a student is trained (epochs, image size, a share of the training
images), never what it is: the parameter count, and so the budget check, is the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweep.compress.plan import plan_trial
from sweep.errors import ConfigError
from sweep.search.fidelity import describe
from sweep.search.space import load_space, parse_space

SPACE = {
    "study": "fid",
    "dataset": {"name": "demo", "image_size": 64, "resize": 72},
    "fixed": {
        "epochs": 40,
        "prune.method": "structured",
        "prune.rate": 0.3,
        "prune.steps": 2,
        "prune.start_epoch": 20,
        "prune.finetune_epochs": 4,
    },
    "fidelity": {
        "search": {"epochs": 10, "image_size": 32, "train_fraction": 0.5},
        "final": {"epochs": 80, "image_size": 96, "seeds": 2},
    },
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv", "inverted_residual"]},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    },
}


def test_search_trials_train_at_the_proxy_fidelity_and_final_ones_at_full() -> None:
    space = parse_space(SPACE, "fid.yaml")
    search = space.trial_config({"student.family": "dsconv", "train.lr": 0.003})
    final = space.final().trial_config({"student.family": "dsconv", "train.lr": 0.003})
    assert (search.train.epochs, search.dataset.image_size) == (10, 32)
    assert search.dataset.train_fraction == 0.5
    assert search.dataset.resize == 36  # 72 scaled by 32/64: the same crop share
    assert (final.train.epochs, final.dataset.image_size, final.dataset.resize) == (80, 96, 108)
    assert final.dataset.train_fraction == 1.0
    # The pruning schedule scales with the epochs: steps at 20 and 24 of 40 epochs.
    assert (search.prune.start_epoch, search.prune.finetune_epochs) == (5, 1)
    assert (final.prune.start_epoch, final.prune.finetune_epochs) == (40, 8)
    # What a trial searches is the same at both stages.
    assert search.train.lr == final.train.lr == 0.003
    assert search.student == final.student
    assert space.fidelity.seeds == 2
    assert describe(search) == "10 epochs at 32 px on 50% of the training images"
    assert describe(final) == "80 epochs at 96 px"


@pytest.mark.parametrize("family", ["dsconv", "inverted_residual"])
def test_a_student_has_the_same_count_at_both_stages(family: str) -> None:
    space = parse_space(SPACE, "fid.yaml")
    chosen = {"student.family": family, "train.lr": 0.003}
    search = plan_trial(space.trial_config(chosen), 11)
    final = plan_trial(space.final().trial_config(chosen), 11)
    assert search.initial_params == final.initial_params
    assert search.final_params == final.final_params


def test_the_final_space_is_its_own_study_with_the_search_experiment() -> None:
    final = parse_space(SPACE, "fid.yaml").final()
    assert final.study_name == "fid.final" and final.experiment_name == "fid"
    assert final.early_stopping["name"] == "none"  # final trainings run to the end
    assert final.final() is final


def test_without_a_fidelity_section_both_stages_are_the_written_settings() -> None:
    document = {k: v for k, v in SPACE.items() if k != "fidelity"}
    space = parse_space(document, "fid.yaml")
    chosen = {"student.family": "dsconv", "train.lr": 0.003}
    assert space.trial_config(chosen) == space.final().trial_config(chosen)
    assert space.fidelity.seeds == 3


def test_fidelity_can_be_set_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    space = load_space(path, ["fidelity.final.epochs=120", "fidelity.search.train_fraction=0.25"])
    assert space.final().defaults.train.epochs == 120
    assert space.defaults.dataset.train_fraction == 0.25


@pytest.mark.parametrize(
    ("fidelity", "key", "problem"),
    [
        ({"search": {"epoch": 3}}, "fidelity.search.epoch", "unknown key"),
        ({"search": {"epochs": 0}}, "fidelity.search.epochs", "must be >= 1"),
        ({"search": {"train_fraction": 0}}, "fidelity.search.train_fraction", "must be > 0"),
        ({"search": {"train_fraction": 1.5}}, "fidelity.search.train_fraction", "<= 1"),
        ({"final": {"seeds": 0}}, "fidelity.final.seeds", "positive integer"),
        ({"search": {"seeds": 2}}, "fidelity.search.seeds", "unknown key"),
        ({"final": {"image_size": 96, "resize": 64}}, "fidelity.final.resize", "smaller"),
        ({"middle": {}}, "fidelity.middle", "unknown stage"),
        ({"search": {"lr": 0.1}}, "fidelity.search.lr", "unknown key"),
        ("cheap", "fidelity", "must be a mapping"),
    ],
)
def test_bad_fidelity_names_the_key(fidelity: object, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_space({**SPACE, "fidelity": fidelity}, "fid.yaml")
    assert error.value.key == key
    assert problem in error.value.problem
    assert str(error.value).startswith(f"fid.yaml: {key}: ")


def test_a_stage_may_not_set_what_the_study_searches() -> None:
    document = {
        **SPACE,
        "params": {**SPACE["params"], "epochs": {"type": "int", "low": 5, "high": 9}},
    }
    with pytest.raises(ConfigError, match="fidelity.search.epochs: train.epochs is searched"):
        parse_space(document, "fid.yaml")


def test_a_set_of_a_staged_setting_applies_at_every_stage(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    space = load_space(path, ["fixed.epochs=1", "dataset.image_size=24"])
    for stage in (space, space.final()):
        cfg = stage.defaults
        assert (cfg.train.epochs, cfg.dataset.image_size) == (1, 24)
    assert space.defaults.dataset.train_fraction == 0.5  # what --set left alone stays staged
    # One stage at a time, by its own key.
    space = load_space(path, ["fixed.epochs=1", "fidelity.final.epochs=5"])
    assert (space.defaults.train.epochs, space.final().defaults.train.epochs) == (1, 5)
