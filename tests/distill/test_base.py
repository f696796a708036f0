"""The distiller registry: one class per kd.method, and what each asks of the teacher."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sweep.config import KD_METHOD_NAMES, build_config
from sweep.distill.base import (
    DISTILLERS,
    DistillBatch,
    Distiller,
    distiller_class,
    register_distiller,
)
from sweep.distill.losses import distillation_loss


def cfg(method: str, alpha: float = 0.5):
    return build_config({"kd.method": method, "kd.alpha": alpha}, "test")


def test_every_method_has_one_distiller() -> None:
    assert sorted(DISTILLERS) == sorted(KD_METHOD_NAMES)
    assert distiller_class("hinton") is Distiller
    assert distiller_class("fitnet") is distiller_class("rkd")
    with pytest.raises(ValueError, match="unknown kd method 'crd'; known: dml, fitnet"):
        distiller_class("crd")
    with pytest.raises(ValueError, match="'hinton' already has a distiller"):
        register_distiller("hinton")(Distiller)
    with pytest.raises(ValueError, match="'crd' is not a kd.method of sweep.config"):
        register_distiller("crd")(Distiller)


@pytest.mark.parametrize(
    ("method", "replays", "needs_at_alpha", "needs_at_zero"),
    [
        ("hinton", True, True, False),
        ("takd", False, True, False),
        ("fitnet", False, True, True),  # the feature loss reads the teacher at any alpha
        ("rkd", False, True, True),
        ("dml", False, False, False),  # a peer teaches, never the teacher
    ],
)
def test_what_each_method_asks_of_the_teacher(
    method: str, replays: bool, needs_at_alpha: bool, needs_at_zero: bool
) -> None:
    distiller = distiller_class(method)
    assert distiller.replays_soft_labels is replays
    assert distiller.needs_teacher(cfg(method, 0.5)) is needs_at_alpha
    assert distiller.needs_teacher(cfg(method, 0.0)) is needs_at_zero


def test_hinton_teacher_runs_live_only_without_cached_logits() -> None:
    teacher = torch.nn.Linear(2, 2)
    assert Distiller.teacher_network(cfg("hinton"), teacher, None, cached_logits=False) is teacher
    assert Distiller.teacher_network(cfg("hinton"), teacher, None, cached_logits=True) is None
    assert Distiller.teacher_network(cfg("hinton", 0.0), teacher, None, False) is None
    dml = distiller_class("dml")
    assert dml.teacher_network(cfg("dml"), teacher, None, cached_logits=False) is None


def test_the_base_loss_is_hintons() -> None:
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    labels = torch.tensor([0, 1, 2, 0])
    batch = DistillBatch(
        images=torch.zeros(4, 3, 8, 8),
        labels=labels,
        student_logits=student,
        teacher_logits=teacher,
        alpha=0.7,
        temperature=3.0,
        label_smoothing=0.1,
        autocast=contextlib.nullcontext,
    )
    parts = Distiller().loss(batch)
    expected = distillation_loss(
        student, teacher, labels, alpha=0.7, temperature=3.0, label_smoothing=0.1
    )
    assert parts.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(parts[key], value)
    assert Distiller().extra_modules() == []
