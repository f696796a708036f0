"""Distillers inside train(): feature methods, mutual learning, and who teaches a trial."""

from __future__ import annotations

import math
import types
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from conftest import tiny_loaders
from sweep.compress.plan import plan_trial
from sweep.compress.stages import make_stages
from sweep.config import TrialConfig, build_config
from sweep.distill.base import DistillBatch
from sweep.distill.distillers import (
    FeatureDistiller,
    MutualDistiller,
    make_distiller,
    replays_soft_labels,
    trial_teacher,
)
from sweep.distill.taps import HintRegressor
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.teacher.assistant import assistant_options, assistant_path, ensure_assistant
from sweep.train import train

CLASSES = 3
SIZE = 16
SMALL = {"student.stem": 8, "student.widths": [16, 32, 64]}  # 3,955 parameters at 3 classes
METHODS = ["hinton", "fitnet", "rkd", "dml", "takd"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    torch.manual_seed(7)
    return resnet18(num_classes=CLASSES)


def config(settings: dict[str, Any]) -> TrialConfig:
    base = {
        **SMALL,
        "train.epochs": 1,
        "train.device": "cpu",
        "train.amp": False,
        "dataset.image_size": SIZE,
    }
    return build_config({**base, **settings})


def tiny_data(n: int = 32, batch: int = 16) -> types.SimpleNamespace:
    return tiny_loaders(CLASSES, SIZE, n, batch)


def student(cfg: TrialConfig, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_student(cfg.student.family, CLASSES, cfg.student.options)


def clone(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, Tensor], module: nn.Module, suffix: str = "weight") -> bool:
    after = module.state_dict()
    keys = [k for k in before if k.endswith(suffix)]
    return bool(keys) and all(not torch.equal(before[k], after[k]) for k in keys)


def hooked(*modules: nn.Module) -> list[str]:
    return [
        f"{type(m).__name__}"
        for root in modules
        for m in root.modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]


def test_fitnet_trains_its_regressor_beside_the_student(teacher: nn.Module) -> None:
    cfg = config({"kd.method": "fitnet", "kd.alpha": 0.5})
    model = student(cfg)
    distiller = FeatureDistiller(cfg, model, teacher)
    try:
        [regressor] = distiller.extra_modules()
        assert isinstance(regressor, HintRegressor) and regressor is distiller.regressor
        # At 16 px the student's last stage (64 channels) and ResNet18's layer4 are both 1x1.
        assert regressor.hint_pair == ("stage3", "stage4")
        assert (regressor.conv.in_channels, regressor.conv.out_channels) == (64, 512)
        before, before_student = clone(regressor), clone(model)
        teacher_before = clone(teacher)
        result = train(
            model, tiny_data(), cfg.train, kd=cfg.kd, teacher=teacher, distiller=distiller
        )
    finally:
        distiller.close()
    [metrics] = result.history
    assert metrics["feature_loss"] > 0 and math.isfinite(metrics["feature_loss"])
    # loss = hinton + 100 * feature (kd.feature_weight None: FitNet's default weight).
    hinton = 0.5 * metrics["kd_loss"] + 0.5 * metrics["task_loss"]
    assert metrics["train_loss"] == pytest.approx(hinton + 100 * metrics["feature_loss"])
    assert changed(before, regressor)  # optimised with the student
    assert changed(before_student, model)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert result.state_dict.keys() == student(cfg).state_dict().keys()  # no regressor keys
    assert count_params(model) == count_params(student(cfg))  # the regressor is not counted
    assert hooked(model, teacher) == []  # close() removed every tap
    assert distiller.student_tap is not None and distiller.student_tap.features == {}


def test_fitnet_regressor_follows_structured_pruning(teacher: nn.Module) -> None:
    cfg = config(
        {
            "kd.method": "fitnet",
            "prune.method": "structured",
            "prune.rate": 0.5,
            "prune.start_epoch": 1,
            "train.epochs": 2,
        }
    )
    plan = plan_trial(cfg, CLASSES)
    model = student(cfg)
    distiller = FeatureDistiller(cfg, model, teacher)
    first = distiller.regressor
    rebuilt: list[tuple[HintRegressor, dict[str, Tensor]]] = []
    model_changed = distiller.model_changed

    def spy(changed_model: nn.Module) -> None:
        model_changed(changed_model)
        rebuilt.append((distiller.regressor, clone(distiller.regressor)))

    distiller.model_changed = spy  # type: ignore[method-assign]
    try:
        result = train(
            model,
            tiny_data(),
            cfg.train,
            kd=cfg.kd,
            teacher=teacher,
            stages=make_stages(cfg, plan),
            distiller=distiller,
        )
    finally:
        distiller.close()
    [(fresh, at_rebuild)] = rebuilt
    assert fresh is distiller.regressor and fresh is not first
    assert first.conv.in_channels == 64
    assert fresh.conv.in_channels == model.features[3][0][1][0].out_channels == 32
    assert changed(at_rebuild, fresh)  # the new regressor joined the optimizer
    assert len(result.history) == 2
    assert all(m["feature_loss"] > 0 and math.isfinite(m["train_loss"]) for m in result.history)
    assert count_params(model) == plan.final_params


def test_rkd_adds_a_finite_relational_loss(teacher: nn.Module) -> None:
    cfg = config({"kd.method": "rkd"})
    model = student(cfg)
    distiller = make_distiller(cfg, model, teacher, CLASSES)
    assert isinstance(distiller, FeatureDistiller) and distiller.extra_modules() == []
    try:
        result = train(
            model, tiny_data(), cfg.train, kd=cfg.kd, teacher=teacher, distiller=distiller
        )
    finally:
        distiller.close()
    [metrics] = result.history
    assert metrics["feature_loss"] > 0 and math.isfinite(metrics["feature_loss"])
    hinton = metrics["train_loss"] - metrics["feature_loss"]  # kd.feature_weight: rkd's 1
    assert hinton == pytest.approx(0.5 * metrics["kd_loss"] + 0.5 * metrics["task_loss"], rel=1e-4)
    assert hooked(model, teacher) == []


def test_feature_methods_need_a_teacher() -> None:
    cfg = config({"kd.method": "fitnet"})
    with pytest.raises(ValueError, match="fitnet"):
        FeatureDistiller(cfg, student(cfg), None)


def test_mutual_learning_trains_a_peer_without_a_teacher() -> None:
    cfg = config({"kd.method": "dml", "train.epochs": 2})
    model = student(cfg)
    distiller = make_distiller(cfg, model, None, CLASSES)
    assert isinstance(distiller, MutualDistiller)
    [peer] = distiller.extra_modules()
    own, other = clone(model), clone(peer)
    assert {k: v.shape for k, v in own.items()} == {k: v.shape for k, v in other.items()}
    assert not torch.equal(own["features.0.0.weight"], other["features.0.0.weight"])
    result = train(model, tiny_data(), cfg.train, kd=cfg.kd, teacher=None, distiller=distiller)
    distiller.close()
    assert changed(own, model) and changed(other, peer)
    for metrics in result.history:
        assert metrics["peer_loss"] > 0 and math.isfinite(metrics["peer_loss"])
        # Each side: CE + KL to the other; the step minimises the sum of both sides.
        own_loss = metrics["kd_loss"] + metrics["task_loss"]
        assert metrics["train_loss"] == pytest.approx(own_loss + metrics["peer_loss"], rel=1e-4)
    assert not [k for k in result.state_dict if k not in own]  # the peer is not exported


def test_the_peer_does_not_move_the_global_rng() -> None:
    cfg = config({"kd.method": "dml"})
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    MutualDistiller(cfg, CLASSES)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("method", METHODS)
def test_only_hinton_replays_soft_labels(method: str) -> None:
    assert replays_soft_labels(config({"kd.method": method})) is (method == "hinton")


@pytest.mark.parametrize(
    ("method", "alpha", "cached", "expected"),
    [
        ("hinton", 0.5, False, "teacher"),
        ("hinton", 0.5, True, None),  # the batches carry its logits
        ("hinton", 0.0, False, None),  # nothing distils
        ("fitnet", 0.0, False, "teacher"),  # the feature loss still reads the teacher
        ("fitnet", 0.5, True, "teacher"),
        ("rkd", 0.0, False, "teacher"),
        ("dml", 0.5, False, None),  # the peer teaches
        ("takd", 0.0, False, None),  # no assistant is trained for nothing to distil
    ],
)
def test_trial_teacher(
    method: str, alpha: float, cached: bool, expected: str | None, tmp_path: Path
) -> None:
    network = nn.Linear(1, 1)
    context = types.SimpleNamespace(teacher=network, home=tmp_path)
    cfg = config({"kd.method": method, "kd.alpha": alpha})
    found = trial_teacher(cfg, context, cached_logits=cached)
    assert found is (network if expected == "teacher" else None)
    assert not (tmp_path / "assistants").exists()
    # Without a teacher nobody teaches.
    assert trial_teacher(cfg, types.SimpleNamespace(teacher=None), cached_logits=cached) is None


def test_takd_distils_its_assistant_once(teacher: nn.Module, tmp_path: Path) -> None:
    teacher_path = tmp_path / "teacher.ckpt"
    torch.save(teacher.state_dict(), teacher_path)
    calls: list[TrialConfig] = []

    def data(cfg: TrialConfig) -> types.SimpleNamespace:
        calls.append(cfg)
        return tiny_data()

    context = types.SimpleNamespace(
        teacher=teacher, teacher_path=teacher_path, home=tmp_path, num_classes=CLASSES, data=data
    )
    # What TrialContext.assistant does; distillation asks the context, never the teacher package.
    context.assistant = lambda cfg: ensure_assistant(cfg, context)
    settings = {"kd.assistant_width": 4, "kd.assistant_epochs": 1, "dataset.root": str(tmp_path)}
    cfg = config({"kd.method": "takd", "kd.alpha": 0.7, "train.epochs": 3, **settings})
    torch.manual_seed(0)
    assistant = trial_teacher(cfg, context, cached_logits=False)

    path = assistant_path(cfg, CLASSES, tmp_path, teacher_path)
    assert path.parent == tmp_path / "assistants" and path.is_file()
    assert len(calls) == 1
    # Distilled once with Hinton's loss on the teacher's recipe, for kd.assistant_epochs.
    assert calls[0].kd.method == "hinton" and calls[0].train.epochs == 1
    assert calls[0].train.lr == cfg.teacher.lr
    expected = create_student("dsconv", CLASSES, assistant_options(4))
    assert [m.out_channels for m in assistant.modules() if isinstance(m, nn.Conv2d)] == [
        m.out_channels for m in expected.modules() if isinstance(m, nn.Conv2d)
    ]
    assert assistant.features[-1][0][1][0].out_channels == 16  # widths 4, 8, 16
    assert count_params(assistant) == count_params(expected)
    assert not assistant.training
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in assistant.state_dict().items())

    mtime = path.stat().st_mtime_ns
    again = trial_teacher(cfg, context, cached_logits=False)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime  # loaded, not trained again
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in assistant.state_dict().items())
    assert [p.name for p in path.parent.glob("*.ckpt")] == [path.name]


@pytest.mark.parametrize(
    "family", ["dsconv", "inverted_residual", "plain", "ghostnet", "shufflenet_v2", "mobilenet_v3"]
)
@pytest.mark.parametrize("method", ["fitnet", "rkd"])
def test_feature_methods_find_every_familys_stages(
    teacher: nn.Module, family: str, method: str
) -> None:
    cfg = build_config(
        {"student.family": family, "kd.method": method, "dataset.image_size": 32}, "test"
    )
    torch.manual_seed(0)
    model = create_student(family, CLASSES, cfg.student.options)
    distiller = make_distiller(cfg, model, teacher, CLASSES)
    try:
        images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
        with torch.no_grad():
            teacher_logits = teacher.eval()(images)
        parts = distiller.loss(
            DistillBatch(images, labels, model(images), teacher_logits, 0.5, 4.0, 0.0, nullcontext)
        )
    finally:
        distiller.close()
    assert parts["feature_loss"].item() > 0 and math.isfinite(parts["loss"].item())
    if method == "fitnet":  # the regressor joins the student's last stage to a teacher stage
        student_tap, teacher_tap = distiller.regressor.hint_pair
        assert student_tap == f"stage{len(model.features) - 1}" and teacher_tap.startswith("stage")
    assert hooked(model, teacher) == []
