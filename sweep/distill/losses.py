"""Knowledge distillation on logits (Hinton et al., 2015): the loss of one batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    targets: Tensor,
    *,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """Hinton's distillation loss: ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(s, y)``.

    ``p_t = softmax(teacher / T)`` and ``p_s = softmax(student / T)``; the KL divergence is summed
    over classes and averaged over the batch (``reduction="batchmean"``, the true KL; "mean"
    would also divide by the number of classes). The ``T^2`` keeps the soft-target gradients on
    the same scale as the hard-target ones whatever ``T`` is. Everything is computed in float32,
    since a bf16/fp16 softmax at high temperature loses most of the teacher's small
    probabilities. No gradient flows into the teacher.

    Args:
        student_logits: ``[B, C]``, any float dtype.
        teacher_logits: ``[B, C]``, or None to train on the labels alone.
        targets: ``[B]`` class indices.
        alpha: weight of the distillation term, in [0, 1].
        temperature: softmax temperature T > 0.
        label_smoothing: label smoothing of the cross-entropy term.

    Returns:
        ``{"loss", "kd_loss", "task_loss"}`` as float32 scalars: ``kd_loss`` is ``T^2 * KL``
        before ``alpha``, ``task_loss`` the cross-entropy. Without a teacher ``loss`` is
        ``task_loss`` and ``kd_loss`` is 0.

    Raises:
        ValueError: ``alpha`` outside [0, 1], ``temperature <= 0``, or logits of different shapes.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student = student_logits.float()
    task_loss = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    if teacher_logits is None:
        kd_loss = torch.zeros((), dtype=torch.float32, device=student.device)
        return {"loss": task_loss, "kd_loss": kd_loss, "task_loss": task_loss}
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match student logits "
            f"{tuple(student_logits.shape)}"
        )
    teacher = teacher_logits.detach().float()
    # kl_div(input, target) is KL(target || input): the teacher's distribution is the target.
    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    kd_loss = kl * temperature**2
    loss = alpha * kd_loss + (1.0 - alpha) * task_loss
    return {"loss": loss, "kd_loss": kd_loss, "task_loss": task_loss}
