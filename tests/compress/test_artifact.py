"""The saved-student format: save and load, the older flat config, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sweep.compress.artifact import StudentArtifact
from sweep.compress.plan import build_planned
from sweep.config import build_config, to_dict
from sweep.errors import CheckpointError, ConfigError
from sweep.models.budget import count_params
from sweep.models.registry import create_student

CLASSES = 3
SMALL = {"student.stem": 8, "student.widths": [16, 32, 64], "dataset.image_size": 32}


def config(**extra: object):
    return build_config({**SMALL, **extra}, "test")


def test_save_then_load_rebuilds_the_same_network(tmp_path: Path) -> None:
    cfg = config()
    torch.manual_seed(0)
    model = create_student("dsconv", CLASSES, cfg.student.options).eval()
    StudentArtifact(cfg, CLASSES, state_dict=model.state_dict(), class_names=["a", "b", "c"]).save(
        tmp_path, "student_config.yaml", "student_best.ckpt"
    )
    loaded = StudentArtifact.load(
        tmp_path / "student_config.yaml", tmp_path / "student_best.ckpt", num_classes=CLASSES
    )
    assert loaded.config == cfg and loaded.class_names == ["a", "b", "c"]
    rebuilt = loaded.build()
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(images), model(images))
    document = yaml.safe_load((tmp_path / "student_config.yaml").read_text())
    assert document["family"] == "dsconv" and document["num_classes"] == CLASSES
    assert document["count"] == "dense" and document["max_params"] == 60_000
    assert document["image_size"] == 32 and document["trial_config"] == to_dict(cfg)


def test_a_pruned_student_is_rebuilt_at_its_pruned_size(tmp_path: Path) -> None:
    cfg = config(**{"prune.method": "structured", "prune.rate": 0.5, "prune.steps": 1})
    pruned = build_planned(cfg, CLASSES, 0.5)
    artifact = StudentArtifact(cfg, CLASSES, 0.5, pruned.state_dict())
    artifact.save(tmp_path, "config.yaml", "student.ckpt")
    loaded = StudentArtifact.load(tmp_path / "config.yaml", tmp_path / "student.ckpt")
    assert loaded.prune_ratio == 0.5
    assert count_params(loaded.build()) == count_params(pruned)
    assert count_params(loaded.build()) < count_params(build_planned(cfg, CLASSES, 0.0))


def test_a_trials_older_flat_config_still_loads(tmp_path: Path) -> None:
    cfg = config()
    flat = {**to_dict(cfg), "num_classes": CLASSES, "prune_ratio": 0.0}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(flat))
    loaded = StudentArtifact.load(tmp_path / "config.yaml")
    assert loaded.config == cfg and loaded.num_classes == CLASSES and loaded.state_dict is None


def test_refusals_name_the_file_and_key(tmp_path: Path) -> None:
    cfg = config()
    StudentArtifact(cfg, CLASSES).save(tmp_path, "config.yaml", "student.ckpt")
    assert not (tmp_path / "student.ckpt").exists()  # no weights, none written
    with pytest.raises(ConfigError, match=r"config.yaml: num_classes: 3, but the data has 5"):
        StudentArtifact.load(tmp_path / "config.yaml", num_classes=5)
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="list.yaml: must be a mapping"):
        StudentArtifact.load(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="nowhere.yaml: cannot read"):
        StudentArtifact.load(tmp_path / "nowhere.yaml")
    wider = create_student("dsconv", CLASSES, {**cfg.student.options, "widths": [16, 32, 96]})
    artifact = StudentArtifact(cfg, CLASSES, state_dict=wider.state_dict())
    with pytest.raises(CheckpointError, match="does not fit the dsconv student of x.yaml: "):
        artifact.build("x.yaml")
