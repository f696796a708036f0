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
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sweep import interrupts
from sweep.config import KDConfig, TrainConfig
from sweep.data.protocol import Loader, TrainData
from sweep.distill.base import DistillBatch, Distiller
from sweep.distill.temperature import temperature_at
from sweep.models.weights import fold_masks

if TYPE_CHECKING:
    from sweep.compress.stages import Stage

EpochCallback = Callable[[int, dict[str, float]], bool | None]
# Called as (epoch, batches done in it, batches an epoch) after every training batch.
BatchCallback = Callable[[int, int, int], None]


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
    # A masked weight is stored as the weight the model uses, as after make_permanent.
    return fold_masks(
        {
            k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
            for k, v in model.state_dict().items()
        }
    )


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
        interrupts.check()
        images, labels = _to_device(images, labels, device)
        logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == labels).sum()
        count += labels.numel()
    model.train(was_training)
    if count == 0:
        return 0.0, math.nan
    return correct.item() / count, loss_sum.item() / count


def cpu_accuracy(model: nn.Module, loader: Iterable[Any]) -> float:
    """Accuracy of ``model`` on ``loader``, run on the CPU (an int8 program runs there)."""
    return evaluate(model, loader, torch.device("cpu"))[0]


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


@dataclass
class _Run:
    """One training run's moving parts, shared by its steps."""

    model: nn.Module
    cfg: TrainConfig
    device: torch.device
    distiller: Distiller
    teacher: nn.Module | None
    kd: KDConfig | None
    distil: bool  # a distillation loss (a teacher, or cached teacher logits)
    total_steps: int
    on_batch: BatchCallback | None = None
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = field(init=False)
    forward: nn.Module = field(init=False)
    step: int = 0

    def __post_init__(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device, memory_format=self.memory_format).eval()
        # A compiled view shares the parameters; evaluation and checkpoints use the plain module.
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model
        self.optimizer = _optimizer(self.trainable(), self.cfg)
        self.scheduler = _scheduler(self.optimizer, self.cfg, self.total_steps)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.device.type == "cuda" else torch.preserve_format

    def trainable(self) -> nn.ModuleList:
        """The student and the distiller's own modules (regressor, peer), on the device."""
        modules = nn.ModuleList([self.model, *self.distiller.extra_modules()])
        return modules.to(self.device, memory_format=self.memory_format)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        # bf16 has float32's range, so no GradScaler; CPU never enters a CUDA context.
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def architecture_changed(self) -> None:
        """A stage replaced parameters: the distiller and the optimizer follow the model."""
        self.distiller.model_changed(self.model)
        retarget_optimizer(self.optimizer, self.trainable())
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model


class _BestWeights:
    """The best epoch so far and a CPU copy of its weights."""

    def __init__(self, model: nn.Module) -> None:
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Forget earlier epochs: they describe a model this one no longer is."""
        self.acc, self.epoch, self.state = -math.inf, -1, _cpu_copy(model)

    def offer(self, model: nn.Module, epoch: int, acc: float) -> None:
        """Keep this epoch's weights if it is the best yet."""
        if acc > self.acc:
            self.acc, self.epoch, self.state = acc, epoch, _cpu_copy(model)


def train(
    model: nn.Module,
    data: TrainData,
    cfg: TrainConfig,
    *,
    kd: KDConfig | None = None,
    teacher: nn.Module | None = None,
    on_epoch_end: EpochCallback | None = None,
    device: torch.device | None = None,
    stages: Sequence[Stage] = (),
    distiller: Distiller | None = None,
    on_batch_end: BatchCallback | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    With both ``kd`` and ``teacher`` the loss is the distillation loss (teacher frozen, in eval
    mode); with neither it is plain cross-entropy. On CUDA the student and teacher run
    channels-last, under bf16 autocast when ``cfg.amp``; on CPU everything is float32.

    Args:
        model: the student; moved to the device and left holding its best-epoch weights.
        data: the train and validation loaders (:class:`TrainData`); train batches may carry
            the teacher's cached logits, ``(images, labels, logits)``, and then no teacher
            network is needed.
        cfg: optimiser, schedule, epochs, seed, device and AMP settings.
        kd: distillation settings (alpha, temperature schedule); needs ``teacher``.
        teacher: the teacher network; needs ``kd``.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch's validation;
            returning True stops training early.
        device: overrides ``cfg.device``.
        stages: compression stages (:mod:`sweep.compress.stages`), called before each epoch;
            after a stage changes the model the optimizer follows it, and the best epoch is
            chosen among the epochs after the last change.
        distiller: makes each batch's loss (default Hinton's, :class:`Distiller`).
        on_batch_end: called as ``on_batch_end(epoch, batches done, batches an epoch)`` after
            every training batch (a progress display).

    Returns:
        The best validation accuracy, its epoch, the per-epoch metrics and best weights.

    Raises:
        ValueError: ``teacher`` without ``kd``, an empty train loader, or an unknown setting.
        FloatingPointError: the training loss became NaN or infinite (names epoch and batch).
    """
    run = _start(model, data, cfg, kd, teacher, device, distiller)
    run.on_batch = on_batch_end
    history: list[dict[str, float]] = []
    best = _BestWeights(model)
    stopped_early = False
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        metrics = _run_epoch(run, data, stages, epoch, best)
        history.append(metrics)
        best.offer(model, epoch, metrics["val_acc"])
        # A copy, so a callback that edits its metrics cannot rewrite the history.
        if on_epoch_end is not None and on_epoch_end(epoch, dict(metrics)):
            stopped_early = True
            break
    train_seconds = time.perf_counter() - start
    for stage in stages:
        stage.after_training(model)
    model.load_state_dict(best.state)
    return TrainResult(
        val_acc=best.acc if history else 0.0,
        best_epoch=best.epoch,
        history=history,
        state_dict=best.state,
        train_seconds=train_seconds,
        stopped_early=stopped_early,
    )


def _start(
    model: nn.Module,
    data: TrainData,
    cfg: TrainConfig,
    kd: KDConfig | None,
    teacher: nn.Module | None,
    device: torch.device | None,
    distiller: Distiller | None,
) -> _Run:
    """Check the arguments, seed, and set up the optimizer and schedule on the device."""
    if teacher is not None and kd is None:
        raise ValueError("a teacher was given without kd settings; pass kd=KDConfig(...)")
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise ValueError("the train loader yields no batches")
    device = device if device is not None else resolve_device(cfg.device)
    cached_logits = bool(getattr(data.train, "yields_teacher_logits", False))
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    return _Run(
        model=model,
        cfg=cfg,
        device=device,
        distiller=distiller if distiller is not None else Distiller(),
        teacher=teacher,
        kd=kd,
        distil=kd is not None and (teacher is not None or cached_logits),
        total_steps=cfg.epochs * steps_per_epoch,
    )


def _run_epoch(
    run: _Run, data: TrainData, stages: Sequence[Stage], epoch: int, best: _BestWeights
) -> dict[str, float]:
    """Stages, one pass of training, validation: the epoch's metrics."""
    started = time.perf_counter()
    if hasattr(data.train, "set_epoch"):
        data.train.set_epoch(epoch)
    _apply_stages(run, stages, epoch, data.train, best)
    temperature = _temperature(run, epoch)
    losses = _train_epoch(run, data.train, epoch, temperature)
    return _epoch_metrics(run, data.val, losses, temperature, started)


def _apply_stages(
    run: _Run, stages: Sequence[Stage], epoch: int, loader: Loader, best: _BestWeights
) -> None:
    """Let each compression stage change the model before the epoch; follow what changed."""

    def one_batch() -> tuple[Tensor, Tensor]:
        images, labels, *_ = next(iter(loader))
        return _to_device(images, labels, run.device)

    changes = {stage.before_epoch(epoch, run.model, one_batch) for stage in stages}
    if changes - {None}:
        # Earlier checkpoints describe a model this one no longer is (or will not load).
        best.reset(run.model)
    if "architecture" in changes:
        run.architecture_changed()


def _temperature(run: _Run, epoch: int) -> float:
    """This epoch's distillation temperature (0 when nothing distils)."""
    kd = run.kd
    if not run.distil or kd is None:
        return 0.0
    return temperature_at(
        epoch,
        run.cfg.epochs,
        kd.temperature_start,
        kd.temperature_end,
        kd.temperature_schedule,
        kd.temperature_steps,
    )


def _train_epoch(run: _Run, loader: Loader, epoch: int, temperature: float) -> dict[str, float]:
    """One pass over the train loader; the loss parts averaged over its samples."""
    settings = partial(
        DistillBatch,
        alpha=run.kd.alpha if run.distil and run.kd is not None else 0.0,
        temperature=temperature if run.distil else 1.0,
        label_smoothing=run.cfg.label_smoothing,
        autocast=run.autocast,
    )
    run.model.train()
    sums: dict[str, float] = {}  # sample-weighted loss parts
    seen = 0
    for index, (images, labels, *cached) in enumerate(loader):
        interrupts.check()  # a Ctrl-C that was swallowed on its way stops the next batch
        images, labels = _to_device(images, labels, run.device)
        teacher_logits = _teacher_logits(run, images, cached)
        with run.autocast():
            student_logits = run.forward(images)
        # The loss itself in float32: softmax at high temperature is sensitive to precision.
        batch = settings(
            images=images,
            labels=labels,
            student_logits=student_logits.float(),
            teacher_logits=teacher_logits,
        )
        values = _train_step(run, batch, f"epoch {epoch} batch {index}")
        if run.on_batch is not None:
            run.on_batch(epoch, index + 1, len(loader))
        n = labels.shape[0]
        seen += n
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * n
    return {"train_loss" if k == "loss" else k: v / max(seen, 1) for k, v in sums.items()}


def _teacher_logits(run: _Run, images: Tensor, cached: list[Tensor]) -> Tensor | None:
    """The teacher's logits on the batch: read from the cache, or run live, or none."""
    if not run.distil:
        return None
    if cached:
        return cached[0].to(run.device, non_blocking=True).float()
    assert run.teacher is not None  # distil without cached logits means a teacher was given
    with torch.no_grad(), run.autocast():
        return run.teacher(images).float()


def _train_step(run: _Run, batch: DistillBatch, where: str) -> dict[str, float]:
    """Loss, backward and update on one batch; its loss parts as floats."""
    parts = run.distiller.loss(batch)
    stacked = torch.stack(list(parts.values())).detach().tolist()
    values = dict(zip(parts, stacked, strict=True))
    if not math.isfinite(values["loss"]):
        raise FloatingPointError(
            f"training loss is {values['loss']} at {where}; the run diverged (try a lower lr)"
        )
    run.optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    run.optimizer.step()
    # Not past the schedule's end: OneCycleLR would extrapolate back up from its minimum.
    run.step += 1
    if run.scheduler is not None and run.step < run.total_steps:
        run.scheduler.step()
    return values


def _epoch_metrics(
    run: _Run, loader: Loader, losses: dict[str, float], temperature: float, started: float
) -> dict[str, float]:
    """The epoch's losses, validation accuracy and loss, learning rate and temperature."""
    val_acc, val_loss = evaluate(run.model, loader, run.device)
    return {
        **losses,
        "val_acc": val_acc,
        "val_loss": val_loss,
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "temperature": float(temperature),
        "epoch_seconds": time.perf_counter() - started,
    }


def retarget_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Point an optimizer at a changed model's parameters, in place.

    Pruning and factorization replace parameters with new tensors, so the optimizer must
    follow. Doing it in place keeps everything bound to the optimizer working: an LR scheduler
    goes on with its schedule (and its check that ``optimizer.step()`` ran), hyper-parameters
    stay as they are now (an lr a scheduler lowered stays lowered). The state (momentum, Adam
    moments) starts afresh: it was shaped for the old tensors.

    Raises:
        ValueError: the optimizer has several parameter groups (replaced parameters are new
            tensors, so which group each belongs to cannot be recovered).
    """
    if len(optimizer.param_groups) != 1:
        raise ValueError("retarget_optimizer supports one parameter group")
    optimizer.state.clear()
    optimizer.param_groups[0]["params"] = [p for p in model.parameters() if p.requires_grad]
