"""sweep.search.space: parsing into Optuna distributions, conditions, overrides, errors."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.config import resolve_options
from sweep.errors import ConfigError
from sweep.search.space import load_space

SPACE = {
    "study": "unit",
    "dataset": {"name": "demo", "image_size": 32, "resize": 32},
    "fixed": {"epochs": 2, "student.widths": [16, 32, 64]},
    "params": {
        "student.family": {"type": "categorical", "choices": ["dsconv", "inverted_residual"]},
        "student.widths.0": {
            "type": "int",
            "low": 8,
            "high": 32,
            "step": 8,
            "when": {"student.family": "dsconv"},
        },
        "student.width_mult": {
            "type": "float",
            "low": 0.25,
            "high": 1.0,
            "when": {"student.family": "inverted_residual"},
        },
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    },
}


def _write(tmp_path: Path, document: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


def test_parses_into_optuna_distributions(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, SPACE))
    by_name = {p.name: p for p in space.params}
    assert isinstance(by_name["student.family"].distribution, CategoricalDistribution)
    assert by_name["student.widths.0"].distribution == IntDistribution(8, 32, step=8)
    assert by_name["train.lr"].distribution == FloatDistribution(1e-4, 1e-2, log=True)
    assert by_name["student.widths.0"].when == {"student.family": ("dsconv",)}
    assert space.settings["train.epochs"] == 2
    assert space.study_name == "unit" and space.direction == "maximize"


def test_conditional_parameters_follow_the_family(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, SPACE))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        chosen = space.suggest(trial)
        family = chosen["student.family"]
        seen.add(family)
        assert ("student.widths.0" in chosen) == (family == "dsconv")
        assert ("student.width_mult" in chosen) == (family == "inverted_residual")
        cfg = space.trial_config(chosen)
        if family == "dsconv":
            resolved = resolve_options({}, cfg.student.options)
            assert resolved["widths"] == [chosen["student.widths.0"], 32, 64]
        study.tell(trial, 0.0)
    assert seen == {"dsconv", "inverted_residual"}


def test_corner_values_cover_every_family_at_low(tmp_path: Path) -> None:
    corners = list(load_space(_write(tmp_path, SPACE)).corner_values())
    assert {c["student.family"] for c in corners} == {"dsconv", "inverted_residual"}
    dsconv = next(c for c in corners if c["student.family"] == "dsconv")
    assert dsconv["student.widths.0"] == 8 and dsconv["train.lr"] == 1e-4


def test_overrides_and_data_dir(tmp_path: Path) -> None:
    space = load_space(
        _write(tmp_path, SPACE),
        ["fixed.epochs=1", "params.lr.high=0.5", "dataset.resize=56", "dataset.image_size=48"]
        + ["study=other"],
        data_dir="/data/food",
    )
    assert space.settings["train.epochs"] == 1
    assert space.settings["dataset.image_size"] == 48
    assert space.settings["dataset.root"] == "/data/food"
    lr = next(p for p in space.params if p.name == "train.lr")
    assert lr.distribution.high == 0.5
    assert space.study_name == "other"


def _broken(**changes: object) -> dict:
    document = yaml.safe_load(yaml.safe_dump(SPACE))
    for dotted, value in changes.items():
        target = document
        *parents, last = dotted.split("/")
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return document


@pytest.mark.parametrize(
    ("changes", "key", "problem"),
    [
        ({"colour": "red"}, "colour", "unknown key"),
        ({"fixed/epochs": "many"}, "fixed.epochs", "must be an integer"),
        ({"fixed/nope": 1}, "fixed.nope", "unknown setting"),
        ({"params/lr/low": 0.1}, "params.lr", "`low <= high` must hold"),
        ({"params/lr/type": "number"}, "params.lr.type", "must be one of"),
        ({"params/lr/low": -1.0}, "params.lr", "`low > 0` must hold for `log=True`"),
        ({"params/lr/step": 0.01}, "params.lr", "`step` is not supported when `log` is true"),
        ({"params/lr/spread": 2}, "params.lr.spread", "unknown key"),
        ({"params/student.family/choices": []}, "params.student.family.choices", "non-empty"),
        (
            {"params/student.widths.0/when": {"student.depth": 2}},
            "params.student.widths.0.when.student.depth",
            "names no earlier parameter",
        ),
        ({"sampler": {"name": "grid"}}, "sampler.name", "must be one of"),
        ({"early_stopping": "sometimes"}, "early_stopping.name", "must be one of"),
        ({"study": "a b"}, "study", "must be a name"),
    ],
)
def test_bad_input_names_file_and_key(
    tmp_path: Path, changes: dict, key: str, problem: str
) -> None:
    path = _write(tmp_path, _broken(**changes))
    with pytest.raises(ConfigError) as error:
        load_space(path)
    assert str(error.value).startswith(f"{path}: {key}: ")
    assert re.search(problem, str(error.value)), error.value
    assert error.value.key == key
    assert re.search(problem, error.value.problem)


def test_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere.yaml: no such file, nor a bundled space"):
        load_space(tmp_path / "nowhere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: not valid YAML"):
        load_space(bad)
    with pytest.raises(ConfigError, match="--set: epochs: expected key=value"):
        load_space(_write(tmp_path, SPACE), ["epochs"])


def test_shipped_spaces_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "search_spaces"
    paths = sorted(root.glob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        space = load_space(path)
        assert space.params, path
