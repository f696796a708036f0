"""Feature taps, hint pairs and each KD method's loss against hand computations."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from sweep import config
from sweep.distill import methods as kd_methods
from sweep.distill.losses import distillation_loss
from sweep.distill.methods import (
    KD_METHODS,
    dml_loss,
    fitnet_loss,
    kd_method,
    method_loss,
    register_kd_method,
    rkd_angle_loss,
    rkd_distance_loss,
)
from sweep.distill.taps import (
    FeatureTap,
    HintRegressor,
    build_hint_regressor,
    pick_hint_pair,
    student_taps,
    tap_shapes,
    teacher_taps,
)
from sweep.models.families import StudentNet, stack_stages
from sweep.models.registry import create_student


def _huber(d: float) -> float:
    return 0.5 * d * d if abs(d) < 1.0 else abs(d) - 0.5


# A 3-4-5 right triangle (student, 2-D) against a 1-1-sqrt2 one (teacher, 3-D): widths differ.
STUDENT_EMB = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
TEACHER_EMB = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def test_rkd_distance_hand_example() -> None:
    # Pair distances over their mean over the 6 ordered pairs i != j.
    student = [d / ((3 + 4 + 5) / 3) for d in (3.0, 4.0, 5.0)]  # 0.75, 1, 1.25
    mu_t = (1 + 1 + math.sqrt(2)) / 3
    teacher = [d / mu_t for d in (1.0, 1.0, math.sqrt(2))]
    # Each pair appears twice in the 3x3 matrix; the zero diagonal adds nothing; mean over 9.
    expected = 2 * sum(_huber(s - t) for s, t in zip(student, teacher, strict=True)) / 9
    assert expected == pytest.approx(0.003481, abs=1e-6)
    assert rkd_distance_loss(STUDENT_EMB, TEACHER_EMB).item() == pytest.approx(expected, rel=1e-5)
    assert rkd_distance_loss(STUDENT_EMB, STUDENT_EMB).item() == 0.0


def test_rkd_angle_hand_example() -> None:
    # Student: right angle at point 0 (cos 0), 45 degrees at points 1 and 2 (cos 1/sqrt2).
    # Teacher: an equilateral triangle, cos 0.5 at every corner.
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])
    # Of the 27 (i, j, k): j == k != i gives cos 1 on both sides, j or k == i gives 0 on both;
    # the 6 with i, j, k distinct are each corner's angle, twice (j, k and k, j).
    corners = [0.0 - 0.5, 1 / math.sqrt(2) - 0.5, 1 / math.sqrt(2) - 0.5]
    expected = 2 * sum(_huber(d) for d in corners) / 27
    assert expected == pytest.approx(0.012436, abs=1e-6)
    assert rkd_angle_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)


def test_rkd_ignores_the_student_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 5, generator=gen), torch.randn(8, 12, generator=gen)
    for loss in (rkd_distance_loss, rkd_angle_loss):
        base = loss(student, teacher).item()
        assert base > 0
        assert loss(student * 37.5, teacher).item() == pytest.approx(base, rel=1e-4)


def test_rkd_runs_in_float32_under_autocast() -> None:
    # A bf16 matmul moves this angle loss by ~1e-3 relative; the losses switch autocast off.
    gen = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(16, 8, generator=gen), torch.randn(16, 32, generator=gen)
    for loss in (rkd_distance_loss, rkd_angle_loss):
        exact = loss(student, teacher)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = loss(student, teacher)
        assert mixed.dtype == torch.float32
        assert mixed.item() == pytest.approx(exact.item(), rel=1e-6)


def test_rkd_gradients_reach_the_student_only() -> None:
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(6, 4, generator=gen, requires_grad=True)
    teacher = torch.randn(6, 9, generator=gen, requires_grad=True)
    (rkd_distance_loss(student, teacher) + rkd_angle_loss(student, teacher)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_rkd_batch_of_one_and_duplicates_stay_finite() -> None:
    one = torch.ones(1, 4, requires_grad=True)
    distance = rkd_distance_loss(one, torch.ones(1, 7))
    assert distance.item() == 0.0
    distance.backward()  # still part of the graph
    assert torch.equal(one.grad, torch.zeros(1, 4))
    assert rkd_angle_loss(one, torch.ones(1, 7)).item() == 0.0
    # Two identical student rows: a zero distance, normalised without NaN.
    student = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = rkd_distance_loss(student, teacher) + rkd_angle_loss(student, teacher)
    loss.backward()
    assert math.isfinite(loss.item())
    assert torch.isfinite(student.grad).all()
    same = torch.zeros(4, 3)  # every distance 0: the mean is clamped, not divided by
    assert rkd_distance_loss(same, same).item() == 0.0


def _identity_regressor(channels: int, size: tuple[int, int] | None = None) -> HintRegressor:
    regressor = HintRegressor(channels, channels, size, batch_norm=False)
    with torch.no_grad():
        regressor.conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        regressor.conv.bias.zero_()
    return regressor


def test_fitnet_identity_regressor() -> None:
    feature = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    regressor = _identity_regressor(3)
    assert fitnet_loss(feature, feature, regressor).item() == 0.0
    # Off by 1 everywhere: a mean squared error of exactly 1.
    assert fitnet_loss(feature, feature + 1.0, regressor).item() == pytest.approx(1.0)
    # With BatchNorm at its initial eval statistics the regressor is x / sqrt(1 + eps).
    bn = HintRegressor(3, 3).eval()
    with torch.no_grad():
        bn.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    assert fitnet_loss(feature, feature, bn).item() == pytest.approx(0.0, abs=1e-9)


def test_hint_regressor_resizes_to_the_teacher() -> None:
    # A larger map is area-averaged: 2x2 blocks of [[0, 2], [4, 6]] average to 3.
    big = torch.tensor([[0.0, 2.0], [4.0, 6.0]]).repeat(4, 4).view(1, 1, 8, 8)
    pooled = _identity_regressor(1, (4, 4))(big)
    assert pooled.shape == (1, 1, 4, 4)
    assert torch.allclose(pooled, torch.full((1, 1, 4, 4), 3.0))
    # A smaller map is interpolated; a constant stays constant.
    small = torch.full((2, 1, 2, 2), 5.0)
    up = _identity_regressor(1, (4, 4))(small)
    assert up.shape == (2, 1, 4, 4) and torch.allclose(up, torch.full_like(up, 5.0))
    # Channel counts change with the conv: 3 student channels to 5 teacher channels.
    assert HintRegressor(3, 5, (2, 2))(torch.randn(2, 3, 4, 4)).shape == (2, 5, 2, 2)
    with pytest.raises(ValueError, match="regressed"):
        fitnet_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4), HintRegressor(3, 5, (2, 2)))


def test_fitnet_gradients_reach_student_and_regressor_not_teacher() -> None:
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 6, 2, 2, requires_grad=True)
    regressor = HintRegressor(3, 6, (2, 2))
    fitnet_loss(student, teacher, regressor).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert regressor.conv.weight.grad is not None and regressor.conv.weight.grad.abs().sum() > 0
    assert teacher.grad is None


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _dml_by_hand(
    own: list[list[float]], other: list[list[float]], targets: list[int], temperature: float
) -> tuple[float, float, float]:
    """``(CE + T^2 KL, T^2 KL, CE)`` with plain floats: KL(p_other || p_own), batch means."""
    ce = sum(-math.log(_softmax(r, 1.0)[y]) for r, y in zip(own, targets, strict=True))
    kl = 0.0
    for o, p in zip(own, other, strict=True):
        p_own, p_other = _softmax(o, temperature), _softmax(p, temperature)
        kl += sum(q * math.log(q / s) for q, s in zip(p_other, p_own, strict=True))
    ce, kl = ce / len(own), kl / len(own)
    return ce + temperature**2 * kl, temperature**2 * kl, ce


def test_dml_matches_the_formula() -> None:
    a_rows, b_rows, y = (
        [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]],
        [[0.0, 1.0, 1.0], [0.0, 0.0, 3.0]],
        [0, 2],
    )
    a = torch.tensor(a_rows, requires_grad=True)
    b = torch.tensor(b_rows, requires_grad=True)
    parts_a, parts_b = dml_loss(a, b, torch.tensor(y), temperature=2.0)
    for parts, (own, other) in ((parts_a, (a_rows, b_rows)), (parts_b, (b_rows, a_rows))):
        loss, kd, task = _dml_by_hand(own, other, y, 2.0)
        assert parts["loss"].item() == pytest.approx(loss, rel=1e-5)
        assert parts["kd_loss"].item() == pytest.approx(kd, rel=1e-5)
        assert parts["task_loss"].item() == pytest.approx(task, rel=1e-5)
    # Summing both losses gives each network the gradient of its own loss alone.
    (parts_a["loss"] + parts_b["loss"]).backward()
    a_alone = a.detach().clone().requires_grad_()
    dml_loss(a_alone, b.detach(), torch.tensor(y), temperature=2.0)[0]["loss"].backward()
    assert torch.allclose(a.grad, a_alone.grad)


def test_dml_batch_of_one_is_finite() -> None:
    parts_a, parts_b = dml_loss(torch.zeros(1, 4), torch.ones(1, 4), torch.tensor([1]))
    # Equal logits on each side: KL 0, cross-entropy ln 4.
    for parts in (parts_a, parts_b):
        assert parts["kd_loss"].item() == pytest.approx(0.0, abs=1e-7)
        assert parts["loss"].item() == pytest.approx(math.log(4.0), rel=1e-6)


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return create_student("dsconv", 11), resnet18(num_classes=11)


def test_taps_capture_stage_shapes(pair: tuple[nn.Module, nn.Module]) -> None:
    student, teacher = pair
    assert tap_shapes(student, student_taps(student), 64) == {
        "stage1": (64, 16, 16),
        "stage2": (128, 8, 8),
        "stage3": (256, 4, 4),
        "embedding": (256,),
    }
    assert tap_shapes(teacher, teacher_taps(teacher), 64) == {
        "stage1": (64, 16, 16),
        "stage2": (128, 8, 8),
        "stage3": (256, 4, 4),
        "stage4": (512, 2, 2),
        "embedding": (512,),
    }


def test_tap_keeps_only_the_last_forward_and_closes(pair: tuple[nn.Module, nn.Module]) -> None:
    student = pair[0].eval()
    with torch.no_grad(), FeatureTap(student_taps(student)) as tap:
        logits = student(torch.randn(3, 3, 32, 32))
        first = weakref.ref(tap.features["stage1"])
        assert tap.features["embedding"].shape == (3, 256)
        # The embedding is what the classifier sees: its Linear reproduces the logits.
        linear = student.classifier[1]
        assert torch.allclose(linear(tap.features["embedding"]), logits, atol=1e-5)
        student(torch.randn(2, 3, 32, 32))
        gc.collect()
        assert first() is None  # the first batch's map was let go
        assert tap.features["stage1"].shape == (2, 64, 8, 8)
    assert tap.features == {}
    assert all(not m._forward_hooks for m in student.modules())
    student(torch.randn(1, 3, 32, 32))
    assert tap.features == {}


def test_pick_hint_pair_on_real_models(pair: tuple[nn.Module, nn.Module]) -> None:
    student, teacher = pair
    assert pick_hint_pair(student, teacher, 64) == ("stage3", "stage3")  # 4x4 and 4x4
    # inverted_residual ends at 2x2 at 64 px, as does the teacher's layer4.
    ir = create_student("inverted_residual", 11)
    assert pick_hint_pair(ir, teacher, 64) == ("stage5", "stage4")
    regressor = build_hint_regressor(student, teacher, 64)
    assert regressor.hint_pair == ("stage3", "stage3")
    assert regressor.conv.in_channels == 256 and regressor.conv.out_channels == 256
    assert regressor.size == (4, 4)


def _pooled_student(size: int) -> StudentNet:
    """A one-stage student whose last map is ``size`` x ``size`` whatever the image."""

    def block(c_in: int, c_out: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.AdaptiveAvgPool2d(size))

    layers, width = stack_stages(4, [(8, 1, 1)], block)
    return StudentNet([nn.Conv2d(3, 4, 3, padding=1), *layers], width, 11, 0.0)


@pytest.mark.parametrize(("size", "stage"), [(13, "stage1"), (12, "stage2"), (11, "stage2")])
def test_pick_hint_pair_closest_and_ties_go_deeper(
    pair: tuple[nn.Module, nn.Module], size: int, stage: str
) -> None:
    # The teacher's stages are 16, 8, 4, 2 px at 64 px: 12 is as close to 16 as to 8.
    assert pick_hint_pair(_pooled_student(size), pair[1], 64) == ("stage1", stage)


def test_dry_forward_restores_modes_statistics_and_rng(pair: tuple[nn.Module, nn.Module]) -> None:
    student, teacher = pair
    student.train()
    student.classifier.eval()  # a mixed state must come back as it was
    teacher.train()
    modes = [m.training for m in (*student.modules(), *teacher.modules())]
    stats = teacher.bn1.running_mean.clone(), teacher.bn1.num_batches_tracked.clone()
    rng = torch.get_rng_state()
    pick_hint_pair(student, teacher, 64)
    assert [m.training for m in (*student.modules(), *teacher.modules())] == modes
    assert torch.equal(teacher.bn1.running_mean, stats[0])
    assert torch.equal(teacher.bn1.num_batches_tracked, stats[1])
    assert torch.equal(torch.get_rng_state(), rng)


def test_registry_flags_and_unknown_names() -> None:
    assert sorted(KD_METHODS) == ["fitnet", "hinton", "rkd"]
    flags = {name: (s.hint_regressor, s.feature_weight) for name, s in KD_METHODS.items()}
    assert flags == {"hinton": (False, 0.0), "fitnet": (True, 100), "rkd": (False, 1.0)}
    with pytest.raises(ValueError, match="known: fitnet, hinton, rkd"):
        kd_method("crd")
    with pytest.raises(ValueError, match="known: fitnet"):
        method_loss(
            "crd",
            student_logits=torch.zeros(1, 2),
            teacher_logits=None,
            targets=torch.tensor([0]),
            alpha=0.5,
            temperature=1.0,
        )
    with pytest.raises(ValueError, match="already registered"):
        register_kd_method("hinton")(lambda *args: None)
    with pytest.raises(ValueError, match="'crd' is not a kd.method of sweep.config"):
        register_kd_method("crd")


def test_a_registered_method_is_used_by_method_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kd_methods, "KD_METHODS", dict(KD_METHODS))
    monkeypatch.setattr(config, "KD_METHOD_NAMES", (*config.KD_METHOD_NAMES, "const"))
    register_kd_method("const", feature_weight=2.0)(
        lambda s, t, regressor, w_d, w_a: torch.tensor(0.25)
    )
    logits, y = torch.zeros(2, 4), torch.tensor([0, 1])
    out = method_loss(
        "const", student_logits=logits, teacher_logits=None, targets=y, alpha=0.5, temperature=1.0
    )
    assert out["feature_loss"].item() == 0.25
    assert out["loss"].item() == pytest.approx(math.log(4.0) + 2.0 * 0.25)


LOGITS = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
TEACHER_LOGITS = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
TARGETS = torch.tensor([0, 2])
HINTON = {"alpha": 0.7, "temperature": 3.0, "label_smoothing": 0.1}


def test_hinton_method_is_the_logit_loss() -> None:
    out = method_loss(
        "hinton", student_logits=LOGITS, teacher_logits=TEACHER_LOGITS, targets=TARGETS, **HINTON
    )
    expected = distillation_loss(LOGITS, TEACHER_LOGITS, TARGETS, **HINTON)
    assert set(out) == {"loss", "kd_loss", "task_loss", "feature_loss"}
    for key, value in expected.items():
        assert out[key].item() == pytest.approx(value.item(), rel=1e-6)
    assert out["feature_loss"].item() == 0.0


def test_dml_is_refused_by_method_loss() -> None:
    with pytest.raises(ValueError, match="unknown kd method 'dml'"):
        method_loss(
            "dml", student_logits=LOGITS, teacher_logits=TEACHER_LOGITS, targets=TARGETS, **HINTON
        )


def test_fitnet_and_rkd_add_weighted_feature_losses() -> None:
    hinton = distillation_loss(LOGITS, TEACHER_LOGITS, TARGETS, **HINTON)["loss"].item()
    common = {"student_logits": LOGITS, "teacher_logits": TEACHER_LOGITS, "targets": TARGETS}
    s_map = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    regressor = _identity_regressor(3)
    regressor.hint_pair = ("stage2", "stage4")
    feats = {"student_feats": {"stage2": s_map}, "teacher_feats": {"stage4": s_map + 0.5}}
    out = method_loss("fitnet", **common, **HINTON, **feats, regressor=regressor)
    assert out["feature_loss"].item() == pytest.approx(0.25)
    assert out["loss"].item() == pytest.approx(hinton + 100.0 * 0.25, rel=1e-6)  # the default
    out = method_loss("fitnet", **common, **HINTON, **feats, regressor=regressor, feature_weight=3)
    assert out["loss"].item() == pytest.approx(hinton + 3 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="build_hint_regressor"):
        method_loss("fitnet", **common, **HINTON, **feats, regressor=None)

    emb = {
        "student_feats": {"embedding": STUDENT_EMB},
        "teacher_feats": {"embedding": TEACHER_EMB},
    }
    dist = rkd_distance_loss(STUDENT_EMB, TEACHER_EMB).item()
    angle = rkd_angle_loss(STUDENT_EMB, TEACHER_EMB).item()
    out = method_loss("rkd", **common, **HINTON, **emb)
    assert out["feature_loss"].item() == pytest.approx(25 * dist + 50 * angle, rel=1e-5)
    assert out["loss"].item() == pytest.approx(hinton + 25 * dist + 50 * angle, rel=1e-5)
    weights = {"rkd_distance_weight": 1.0, "rkd_angle_weight": 0.0, "feature_weight": 2.0}
    out = method_loss("rkd", **common, **HINTON, **emb, **weights)
    assert out["loss"].item() == pytest.approx(hinton + 2 * dist, rel=1e-5)
    with pytest.raises(ValueError, match="teacher features lack tap 'embedding'; given: none"):
        method_loss("rkd", **common, **HINTON, student_feats=emb["student_feats"])


@pytest.mark.parametrize("method", ["fitnet", "rkd"])
@pytest.mark.parametrize("batch", [1, 4])
def test_one_training_step_with_real_models(
    pair: tuple[nn.Module, nn.Module], method: str, batch: int
) -> None:
    student, teacher = pair
    student.train()
    teacher.eval()
    regressor = build_hint_regressor(student, teacher, 64)
    images, targets = torch.randn(batch, 3, 64, 64), torch.randint(0, 11, (batch,))
    with FeatureTap(student_taps(student)) as s_tap, FeatureTap(teacher_taps(teacher)) as t_tap:
        with torch.no_grad():
            teacher_logits = teacher(images)
        logits = student(images)
        out = method_loss(
            method,
            student_logits=logits,
            teacher_logits=teacher_logits,
            targets=targets,
            alpha=0.5,
            temperature=4.0,
            student_feats=s_tap.features,
            teacher_feats=t_tap.features,
            regressor=regressor,
        )
    assert all(math.isfinite(v.item()) for v in out.values())
    student.zero_grad()
    out["loss"].backward()
    assert student.features[1][0][0][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    if method == "fitnet":
        assert regressor.conv.weight.grad.abs().sum() > 0
        assert out["feature_loss"].item() > 0
    # The regressor lives outside the student: the exported weights never carry it.
    assert not any(k.startswith(("conv", "norm")) for k in student.state_dict())
