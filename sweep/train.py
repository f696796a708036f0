"""One training run: a student (optionally distilled from a teacher) on a train/val loader pair.

Driven by plain arguments and :class:`~sweep.config.TrainConfig`; knows nothing of Optuna or
MLflow. The caller reports progress and decides on pruning through ``on_epoch_end``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sweep.config import KDConfig, TrainConfig
from sweep.distill import Distiller, LogitDistiller, temperature_at
from sweep.prune import retarget_optimizer
from sweep.stages import Stage

EpochCallback = Callable[[int, dict[str, float]], bool | None]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device setting into a torch device.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The device.

    Raises:
        ValueError: CUDA was asked for but is not available (or has no device ``N``), or the
            name is not one of the above.
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


@dataclass
class TrainResult:
    """What one training run produced."""

    val_acc: float  # best validation accuracy over the epochs run
    best_epoch: int  # 0-based
    history: list[dict[str, float]]  # one metrics dict per epoch, as passed to on_epoch_end
    state_dict: dict[str, Tensor] = field(repr=False)  # CPU copy of the best-epoch weights
    train_seconds: float
    stopped_early: bool


def _cpu_copy(model: nn.Module) -> dict[str, Tensor]:
    # Contiguous CPU copies: independent of later updates, and saveable/loadable anywhere.
    state = {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }
    # A weight under an unstructured-pruning mask is stored as ``weight_orig`` and
    # ``weight_mask``; the checkpoint holds the weight the model uses, as after make_permanent.
    for key in [k for k in state if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        if base + "_mask" in state:
            state[base] = state.pop(key) * state.pop(base + "_mask")
    return state


def _to_device(images: Tensor, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    if device.type == "cuda":
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        return images, labels.to(device, non_blocking=True)
    return images.to(device), labels.to(device)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], device: torch.device) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``loader``, in float32, without gradients.

    The model's train/eval mode is restored afterwards.

    Args:
        model: the classifier, already on ``device``.
        loader: yields ``(images, labels)`` batches.
        device: where to run.

    Returns:
        ``(accuracy in [0, 1], mean cross-entropy per sample)``; ``(0.0, nan)`` for no samples.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for images, labels in loader:
        images, labels = _to_device(images, labels, device)
        logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == labels).sum()
        count += labels.numel()
    model.train(was_training)
    if count == 0:
        return 0.0, math.nan
    return correct.item() / count, loss_sum.item() / count


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        # Nesterov needs momentum; with momentum 0 this is plain SGD.
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use adamw or sgd")


def _scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.lr_schedule == "constant":
        return None
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total_steps, eta_min=0.0
        )
    if cfg.lr_schedule == "onecycle":
        # OneCycleLR refuses to cycle momentum on an optimizer that has none (SGD, momentum 0).
        cycle = cfg.optimizer == "adamw" or cfg.momentum > 0
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, cycle_momentum=cycle
        )
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; use cosine, onecycle or constant")


def train(
    model: nn.Module,
    data: Any,
    cfg: TrainConfig,
    *,
    kd: KDConfig | None = None,
    teacher: nn.Module | None = None,
    on_epoch_end: EpochCallback | None = None,
    device: torch.device | None = None,
    stages: Sequence[Stage] = (),
    distiller: Distiller | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    With both ``kd`` and ``teacher`` the loss is the distillation loss (teacher frozen, in eval
    mode); with neither it is plain cross-entropy. On CUDA the student and teacher run
    channels-last, under bf16 autocast when ``cfg.amp``; on CPU everything is float32.

    Args:
        model: the student; moved to the device and left holding its best-epoch weights.
        data: has ``train`` and ``val`` loaders yielding ``(images, labels)``. A train loader
            may also yield the teacher's logits for the batch, ``(images, labels, logits)``
            (cached soft labels; then no teacher network is needed), and may have a
            ``set_epoch(epoch)`` method, called before each epoch.
        cfg: optimiser, schedule, epochs, seed, device and AMP settings.
        kd: distillation settings (alpha, temperature schedule); needs ``teacher``.
        teacher: the teacher network; needs ``kd``.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch's validation;
            returning True stops training early.
        device: overrides ``cfg.device``.
        stages: compression stages (:mod:`sweep.stages`), called before each epoch; after a
            stage changes the model the optimizer follows it, and the best epoch is chosen
            among the epochs after the last change.
        distiller: makes each batch's loss (default Hinton's, :class:`LogitDistiller`).

    Returns:
        The best validation accuracy, its epoch, the per-epoch metrics and best weights.

    Raises:
        ValueError: ``teacher`` without ``kd``, an empty train loader, or an unknown setting.
        FloatingPointError: the training loss became NaN or infinite (names epoch and batch).
    """
    if teacher is not None and kd is None:
        raise ValueError("a teacher was given without kd settings; pass kd=KDConfig(...)")
    cached_logits = bool(getattr(data.train, "yields_teacher_logits", False))
    distil = kd is not None and (teacher is not None or cached_logits)
    device = device if device is not None else resolve_device(cfg.device)
    cuda = device.type == "cuda"
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise ValueError("the train loader yields no batches")

    torch.manual_seed(cfg.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    memory_format = torch.channels_last if cuda else torch.preserve_format
    distiller = distiller if distiller is not None else LogitDistiller()

    def trainable() -> nn.ModuleList:
        # The distiller's own modules (regressor, peer) are optimised with the student.
        modules = nn.ModuleList([model, *distiller.extra_modules()])
        return modules.to(device, memory_format=memory_format)

    if teacher is not None:
        teacher.to(device, memory_format=memory_format).eval()
    # A compiled view shares the parameters; evaluation and checkpoints use the plain module.
    forward = torch.compile(model) if cfg.compile else model
    optimizer = _optimizer(trainable(), cfg)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = _scheduler(optimizer, cfg, total_steps)
    step = 0

    def autocast() -> contextlib.AbstractContextManager[Any]:
        # bf16 has float32's range, so no GradScaler; CPU never enters a CUDA context.
        if cuda and cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def one_batch() -> tuple[Tensor, Tensor]:
        images, labels, *_ = next(iter(data.train))
        return _to_device(images, labels, device)

    history: list[dict[str, float]] = []
    best_acc, best_epoch, best_state = -math.inf, -1, _cpu_copy(model)
    stopped_early = False
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        epoch_start = time.perf_counter()
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch)
        changes = {stage.before_epoch(epoch, model, one_batch) for stage in stages}
        if changes - {None}:
            # Earlier checkpoints describe a model this one no longer is (or will not load).
            best_acc, best_epoch, best_state = -math.inf, -1, _cpu_copy(model)
        if "architecture" in changes:
            distiller.model_changed(model)
            retarget_optimizer(optimizer, trainable())
            forward = torch.compile(model) if cfg.compile else model
        temperature = 0.0
        if distil:
            temperature = temperature_at(
                epoch,
                cfg.epochs,
                kd.temperature_start,
                kd.temperature_end,
                kd.temperature_schedule,
                kd.temperature_steps,
            )
        alpha = kd.alpha if distil else 0.0
        model.train()
        sums: dict[str, float] = {}  # sample-weighted loss parts
        seen = 0
        for batch, (images, labels, *cached) in enumerate(data.train):
            images, labels = _to_device(images, labels, device)
            teacher_logits = None
            if cached and distil:
                teacher_logits = cached[0].to(device, non_blocking=True).float()
            elif distil:
                with torch.no_grad(), autocast():
                    teacher_logits = teacher(images).float()
            with autocast():
                student_logits = forward(images)
            # The loss itself in float32: softmax at high temperature is sensitive to precision.
            parts = distiller.loss(
                images,
                labels,
                student_logits.float(),
                teacher_logits,
                alpha=alpha,
                temperature=temperature if distil else 1.0,
                label_smoothing=cfg.label_smoothing,
                autocast=autocast,
            )
            loss = parts["loss"]
            stacked = torch.stack(list(parts.values())).detach().tolist()
            values = dict(zip(parts, stacked, strict=True))
            if not math.isfinite(values["loss"]):
                raise FloatingPointError(
                    f"training loss is {values['loss']} at epoch {epoch} batch {batch}; "
                    "the run diverged (try a lower lr)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Not past the schedule's end: OneCycleLR would extrapolate back up from its minimum.
            step += 1
            if scheduler is not None and step < total_steps:
                scheduler.step()
            n = labels.shape[0]
            seen += n
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value * n

        val_acc, val_loss = evaluate(model, data.val, device)
        losses = {"train_loss" if k == "loss" else k: v / max(seen, 1) for k, v in sums.items()}
        metrics = {
            **losses,
            "val_acc": val_acc,
            "val_loss": val_loss,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "temperature": float(temperature),
            "epoch_seconds": time.perf_counter() - epoch_start,
        }
        history.append(metrics)
        if val_acc > best_acc:
            best_acc, best_epoch, best_state = val_acc, epoch, _cpu_copy(model)
        # A copy, so a callback that edits its metrics cannot rewrite the history.
        if on_epoch_end is not None and on_epoch_end(epoch, dict(metrics)):
            stopped_early = True
            break

    train_seconds = time.perf_counter() - start
    for stage in stages:
        stage.after_training(model)
    model.load_state_dict(best_state)
    return TrainResult(
        val_acc=best_acc if history else 0.0,
        best_epoch=best_epoch,
        history=history,
        state_dict=best_state,
        train_seconds=train_seconds,
        stopped_early=stopped_early,
    )
