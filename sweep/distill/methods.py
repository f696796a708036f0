"""The losses of the distillation methods: Hinton's plus a feature loss (FitNet, RKD), DML's.

Pure torch. Each feature method is registered with :func:`register_kd_method` under its
``kd.method`` name, with its feature loss and default weight; :func:`method_loss` adds it to
Hinton's loss on logits. Which networks run and what they are hooked at is the distillers'
business (:mod:`sweep.distill.distillers`): FitNet trains a :class:`HintRegressor` beside the
student; DML's two networks call :func:`dml_loss`; TAKD's student uses Hinton's loss alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweep.config import check_kd_method
from sweep.distill.losses import distillation_loss


def fitnet_loss(student_feature: Tensor, teacher_feature: Tensor, regressor: nn.Module) -> Tensor:
    """FitNet hint loss (Romero et al. 2015): ``mean((r(s) - t)^2)``.

    The mean runs over batch, channels and positions (the paper's ``1/2 ||r(s) - t||^2`` up to
    a constant the feature weight absorbs), in float32. The teacher map ``t`` is detached.

    Raises:
        ValueError: ``r(s)`` and ``t`` differ in shape.
    """
    guided = regressor(student_feature).float()
    target = teacher_feature.detach().float()
    if guided.shape != target.shape:
        raise ValueError(f"regressed {tuple(guided.shape)} != teacher {tuple(target.shape)}")
    return F.mse_loss(guided, target)


def _distances(emb: Tensor) -> Tensor:
    """Pairwise distances over their mean across pairs ``i != j``, in float32."""
    n = len(emb)
    with torch.autocast(emb.device.type, enabled=False):
        # The direct form is exact for near-duplicate pairs (the matmul form cancels) and has a
        # zero, not NaN, gradient at distance 0.
        dist = torch.cdist(emb.float(), emb.float(), compute_mode="donot_use_mm_for_euclid_dist")
        return dist / (dist.sum() / (n * (n - 1))).clamp_min(1e-12)


def _angles(emb: Tensor) -> Tensor:
    """``[i, j, k]``: cosine of the angle at anchor ``i`` between ``e_j - e_i``, ``e_k - e_i``."""
    with torch.autocast(emb.device.type, enabled=False):
        emb = emb.float()
        # normalize clamps the norm at eps: degenerate triplets (j or k == i) give cosine 0.
        unit = F.normalize(emb.unsqueeze(0) - emb.unsqueeze(1), dim=2)
        return unit @ unit.transpose(1, 2)


def rkd_distance_loss(student_emb: Tensor, teacher_emb: Tensor) -> Tensor:
    """RKD distance loss (Park et al. 2019): ``mean_ij huber(psi_s(i, j) - psi_t(i, j))``.

    ``psi(i, j) = ||e_i - e_j|| / mu`` with ``mu`` the mean distance over pairs ``i != j``, so
    the loss ignores the embeddings' scale and width ([B, Ds] vs [B, Dt]). ``huber`` is
    ``F.smooth_l1_loss`` (delta 1) averaged over all ``B^2`` entries, the zero diagonal included,
    as in the authors' code that tuned the weight 25. The teacher side is detached; a batch of 1
    has no pairs and gives 0.
    """
    if len(student_emb) < 2:
        return student_emb.float().sum() * 0.0  # keeps the graph, so backward() still works
    with torch.no_grad():
        target = _distances(teacher_emb.flatten(1))
    return F.smooth_l1_loss(_distances(student_emb.flatten(1)), target)


def rkd_angle_loss(student_emb: Tensor, teacher_emb: Tensor) -> Tensor:
    """RKD angle loss (Park et al. 2019): ``mean_ijk huber(cos_s(i, j, k) - cos_t(i, j, k))``.

    ``cos(i, j, k) = <u_ij, u_ik>`` with ``u_ij = (e_j - e_i) / ||e_j - e_i||``, the angle at
    anchor ``i``; averaged over all ``B^3`` triplets as in the authors' code (degenerate ones
    are 0 on both sides). Memory is ``O(B^2 D)``. The teacher side is detached. Exact duplicate
    student embeddings give large but finite gradients (``1 / eps``), as there.
    """
    with torch.no_grad():
        target = _angles(teacher_emb.flatten(1))
    return F.smooth_l1_loss(_angles(student_emb.flatten(1)), target)


def dml_loss(
    logits_a: Tensor,
    logits_b: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Deep mutual learning (Zhang et al. 2018): ``CE(own, y) + T^2 KL(p_other || p_own)`` each.

    The other side is detached in each, so ``(a["loss"] + b["loss"]).backward()`` gives each
    network exactly the gradient of its own loss.

    Returns:
        ``(parts of a, parts of b)``, each ``{"loss", "kd_loss", "task_loss"}`` as in
        :func:`sweep.distill.losses.distillation_loss`, with ``loss = kd_loss + task_loss``.
    """
    # alpha only weights distillation_loss's "loss", which DML replaces by the plain sum.
    kd = partial(
        distillation_loss, alpha=0.5, temperature=temperature, label_smoothing=label_smoothing
    )
    sides = (kd(logits_a, logits_b, targets), kd(logits_b, logits_a, targets))
    a, b = ({**parts, "loss": parts["kd_loss"] + parts["task_loss"]} for parts in sides)
    return a, b


Feats = Mapping[str, Tensor]
# fn(student feats, teacher feats, regressor, rkd distance weight, rkd angle weight) -> the
# feature loss, or None for a method on logits alone.
FeatureLoss = Callable[[Feats, Feats, "nn.Module | None", float, float], "Tensor | None"]


@dataclass(frozen=True, kw_only=True)
class KDMethodSpec:
    """What a distillation method needs from the training loop.

    Attributes:
        feature_loss: see :data:`FeatureLoss`.
        hint_regressor: trains a :func:`build_hint_regressor` beside the student (FitNet).
        feature_weight: default weight of the feature loss in the total.
    """

    feature_loss: FeatureLoss
    hint_regressor: bool = False
    feature_weight: float = 0.0


KD_METHODS: dict[str, KDMethodSpec] = {}


def register_kd_method(name: str, **fields: Any) -> Callable[[FeatureLoss], FeatureLoss]:
    """Register a :data:`FeatureLoss` as method ``name``, ``fields`` its other spec fields.

    Raises:
        ValueError: ``name`` is already registered (a silent override would change old runs),
            or is not one of :data:`sweep.config.KD_METHOD_NAMES`.
    """
    check_kd_method(name)

    def decorator(fn: FeatureLoss) -> FeatureLoss:
        if name in KD_METHODS:
            raise ValueError(f"kd method {name!r} is already registered")
        KD_METHODS[name] = KDMethodSpec(feature_loss=fn, **fields)
        return fn

    return decorator


def kd_method(name: str) -> KDMethodSpec:
    """Return the spec of method ``name``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if name not in KD_METHODS:
        raise ValueError(f"unknown kd method {name!r}; known: {', '.join(sorted(KD_METHODS))}")
    return KD_METHODS[name]


def _tap(feats: Feats, name: str, side: str) -> Tensor:
    if name not in feats:
        raise ValueError(f"{side} features lack tap {name!r}; given: {', '.join(feats) or 'none'}")
    return feats[name]


@register_kd_method("hinton")
def _logits_only(s: Feats, t: Feats, regressor: nn.Module | None, w_d: float, w_a: float) -> None:
    return None


# Default weights from Tian et al.'s RepDistiller benchmark (CRD, 2020), which adds each feature
# loss to the cross-entropy in one stage (FitNet's paper trains the hint alone first instead).
@register_kd_method("fitnet", hint_regressor=True, feature_weight=100)
def _fitnet(s: Feats, t: Feats, regressor: nn.Module | None, w_d: float, w_a: float) -> Tensor:
    pair = getattr(regressor, "hint_pair", None)
    if regressor is None or pair is None:
        raise ValueError("fitnet needs a regressor from build_hint_regressor (with a hint_pair)")
    return fitnet_loss(_tap(s, pair[0], "student"), _tap(t, pair[1], "teacher"), regressor)


@register_kd_method("rkd", feature_weight=1.0)
def _rkd(s: Feats, t: Feats, regressor: nn.Module | None, w_d: float, w_a: float) -> Tensor:
    s_emb, t_emb = _tap(s, "embedding", "student"), _tap(t, "embedding", "teacher")
    return w_d * rkd_distance_loss(s_emb, t_emb) + w_a * rkd_angle_loss(s_emb, t_emb)


def method_loss(
    method: str,
    *,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    targets: Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
    student_feats: Feats | None = None,
    teacher_feats: Feats | None = None,
    regressor: nn.Module | None = None,
    feature_weight: float | None = None,
    rkd_distance_weight: float = 25.0,
    rkd_angle_weight: float = 50.0,
) -> dict[str, Tensor]:
    """A student's loss under ``method``: ``hinton loss + feature_weight * feature_loss``.

    The hinton part is :func:`sweep.distill.losses.distillation_loss` on the logits (``alpha``,
    ``temperature``, ``label_smoothing`` as there). ``feature_loss`` is :func:`fitnet_loss` on
    the regressor's ``hint_pair`` taps (fitnet), ``rkd_distance_weight * distance +
    rkd_angle_weight * angle`` on the ``embedding`` taps (rkd; 25 and 50 are the paper's), and
    0 for methods on logits alone (hinton, takd).

    Args:
        method: a name in :data:`KD_METHODS` (hinton, fitnet, rkd).
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``, or None for the cross-entropy alone.
        targets: ``[B]`` class indices.
        student_feats: the student's :attr:`FeatureTap.features` (fitnet, rkd).
        teacher_feats: the teacher's :attr:`FeatureTap.features` (fitnet, rkd).
        regressor: the :class:`HintRegressor` (fitnet).
        feature_weight: None takes the method's default (fitnet 100, rkd 1: RepDistiller's).

    Returns:
        ``{"loss", "kd_loss", "task_loss", "feature_loss"}`` float32 scalars, ``feature_loss``
        before ``feature_weight``.

    Raises:
        ValueError: unknown method (dml trains two networks: :func:`dml_loss`), a missing tap
            or regressor, or settings
            :func:`~sweep.distill.losses.distillation_loss` rejects.
    """
    spec = kd_method(method)
    hinton = {"alpha": alpha, "temperature": temperature, "label_smoothing": label_smoothing}
    parts = distillation_loss(student_logits, teacher_logits, targets, **hinton)
    feature = spec.feature_loss(
        student_feats or {}, teacher_feats or {}, regressor, rkd_distance_weight, rkd_angle_weight
    )
    if feature is None:
        return {**parts, "feature_loss": torch.zeros_like(parts["loss"])}
    weight = spec.feature_weight if feature_weight is None else feature_weight
    return {**parts, "loss": parts["loss"] + weight * feature, "feature_loss": feature}
