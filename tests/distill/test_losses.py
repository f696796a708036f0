"""Distillation loss against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sweep.distill.losses import distillation_loss

LN2, LN3 = math.log(2.0), math.log(3.0)

# Two samples, three classes, T = 2. Logits are chosen so the softmaxes are simple fractions.
# student / T = [ln2, 0, 0]  -> p_s = [2, 1, 1] / 4 = [0.5, 0.25, 0.25]
#               [0, ln3, 0]  -> p_s = [1, 3, 1] / 5 = [0.2, 0.6, 0.2]
# teacher / T = [0, ln2, ln2] -> p_t = [1, 2, 2] / 5 = [0.2, 0.4, 0.4]
#               [0, 0, 0]     -> p_t = [1/3, 1/3, 1/3]
STUDENT = torch.tensor([[2 * LN2, 0.0, 0.0], [0.0, 2 * LN3, 0.0]])
TEACHER = torch.tensor([[0.0, 2 * LN2, 2 * LN2], [0.0, 0.0, 0.0]])
TARGETS = torch.tensor([0, 2])

# KL(p_t || p_s) = sum p_t * ln(p_t / p_s)
KL_1 = 0.2 * math.log(0.2 / 0.5) + 2 * 0.4 * math.log(0.4 / 0.25)  # 0.192745
KL_2 = (2 * math.log((1 / 3) / 0.2) + math.log((1 / 3) / 0.6)) / 3  # 0.144622
KD = 2.0**2 * (KL_1 + KL_2) / 2  # T^2 * batch mean = 0.674733
# Cross-entropy at T = 1: softmax([ln4, 0, 0]) = [4, 1, 1] / 6, target 0 -> -ln(2/3);
# softmax([0, ln9, 0]) = [1, 9, 1] / 11, target 2 -> ln 11.
CE = (-math.log(4 / 6) + math.log(11.0)) / 2  # 1.401680


def test_hand_computed_example() -> None:
    assert KL_1 == pytest.approx(0.192745, abs=1e-6)
    assert KL_2 == pytest.approx(0.144622, abs=1e-6)
    assert KD == pytest.approx(0.674733, abs=1e-6)
    assert CE == pytest.approx(1.401680, abs=1e-6)
    out = distillation_loss(STUDENT, TEACHER, TARGETS, alpha=0.25, temperature=2.0)
    assert out["kd_loss"].item() == pytest.approx(KD, rel=1e-5)
    assert out["task_loss"].item() == pytest.approx(CE, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.25 * KD + 0.75 * CE, rel=1e-5)
    assert out["loss"].item() == pytest.approx(1.219943, abs=1e-5)


def test_alpha_ends() -> None:
    hard = distillation_loss(STUDENT, TEACHER, TARGETS, alpha=0.0, temperature=2.0)
    assert hard["loss"].item() == pytest.approx(CE, rel=1e-5)
    soft = distillation_loss(STUDENT, TEACHER, TARGETS, alpha=1.0, temperature=2.0)
    assert soft["loss"].item() == pytest.approx(KD, rel=1e-5)


def test_kl_goes_from_teacher_to_student() -> None:
    # p_s = [0.5, 0.25, 0.25], p_t = [0.2, 0.4, 0.4]; at T = 1 the T^2 factor is 1.
    student, teacher = STUDENT[:1] / 2, TEACHER[:1] / 2
    kd = distillation_loss(student, teacher, TARGETS[:1], alpha=1.0, temperature=1.0)["kd_loss"]
    teacher_to_student = KL_1  # 0.192745
    student_to_teacher = 0.5 * math.log(0.5 / 0.2) + 2 * 0.25 * math.log(0.25 / 0.4)  # 0.223144
    assert kd.item() == pytest.approx(teacher_to_student, rel=1e-5)
    assert abs(kd.item() - student_to_teacher) > 0.03


def test_identical_logits_have_no_kd_loss() -> None:
    out = distillation_loss(STUDENT, STUDENT.clone(), TARGETS, alpha=0.5, temperature=4.0)
    assert out["kd_loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.5 * CE, rel=1e-5)


def test_without_teacher_the_loss_is_the_task_loss() -> None:
    out = distillation_loss(
        STUDENT, None, TARGETS, alpha=0.9, temperature=4.0, label_smoothing=0.1
    )
    smoothed = F.cross_entropy(STUDENT, TARGETS, label_smoothing=0.1)
    assert out["loss"].item() == out["task_loss"].item() == pytest.approx(smoothed.item())
    assert out["kd_loss"].item() == 0.0


def test_half_precision_logits_are_computed_in_float32() -> None:
    student, teacher = STUDENT.bfloat16(), TEACHER.bfloat16()
    out = distillation_loss(student, teacher, TARGETS, alpha=0.25, temperature=2.0)
    reference = distillation_loss(
        student.float(), teacher.float(), TARGETS, alpha=0.25, temperature=2.0
    )
    assert all(v.dtype == torch.float32 for v in out.values())
    assert out["loss"].item() == pytest.approx(reference["loss"].item(), rel=1e-6)


def test_no_gradient_reaches_the_teacher() -> None:
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    distillation_loss(student, teacher, TARGETS, alpha=0.5, temperature=2.0)["loss"].backward()
    assert student.grad is not None and teacher.grad is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(STUDENT, TEACHER, TARGETS, alpha=1.5, temperature=2.0)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(STUDENT, TEACHER, TARGETS, alpha=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="do not match"):
        distillation_loss(STUDENT, TEACHER[:, :2], TARGETS, alpha=0.5, temperature=2.0)
