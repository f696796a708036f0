"""Find the study's teacher: the named checkpoint, or one trained here once and reused.

A trained teacher is kept under ``$SWEEP_HOME/teachers/`` named by a fingerprint of what
shapes it (data folder, image settings, teacher settings, seed, class count), so a later
``sweep run`` on the same data reuses it, and a lock makes concurrent workers train it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from filelock import FileLock

from sweep.config import TrialConfig, flatten
from sweep.data import resolve_root
from sweep.models.weights import save_state_dict
from sweep.paths import artifact_location, teachers_dir, tracking_uri
from sweep.teacher.network import load_teacher, teacher_train_config, train_teacher
from sweep.teacher.trial_data import trial_data
from sweep.track.tracker import Tracker
from sweep.train import resolve_device

TEACHER_EXPERIMENT = "sweep-teachers"
EpochLog = Callable[[int, int, dict[str, float]], None]
# Called after each training batch as (epoch, epochs, batch, batches, images per batch).
BatchLog = Callable[[int, int, int, int, int], None]


def teacher_fingerprint(cfg: TrialConfig, num_classes: int, home: Path) -> str:
    """A short hash of everything that shapes a teacher trained from scratch."""
    dataset = asdict(cfg.dataset)
    dataset["root"] = str(resolve_root(cfg.dataset, home))
    del dataset["train_fraction"]  # a teacher always learns from the whole split
    teacher = {k: v for k, v in asdict(cfg.teacher).items() if k != "checkpoint"}
    key = {
        "dataset": dataset,
        "teacher": teacher,
        "seed": cfg.train.seed,
        "num_classes": num_classes,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def teacher_path(cfg: TrialConfig, num_classes: int, home: Path) -> Path:
    """Where this config's teacher is (``teacher.checkpoint``) or would be trained to."""
    if cfg.teacher.checkpoint:
        return Path(cfg.teacher.checkpoint).expanduser()
    return teachers_dir(home) / f"resnet18-{teacher_fingerprint(cfg, num_classes, home)}.ckpt"


def ensure_teacher(
    cfg: TrialConfig,
    num_classes: int,
    home: Path,
    on_epoch: EpochLog | None = None,
    on_batch: BatchLog | None = None,
) -> tuple[torch.nn.Module, Path]:
    """Load the teacher, training and saving it first when none exists yet.

    Args:
        cfg: the study's settings (``teacher.*``, ``dataset.*``, ``train.device``).
        num_classes: classes of the data set.
        home: the sweep home folder.
        on_epoch: called as ``(epoch, epochs, metrics)`` while a teacher trains.
        on_batch: called as ``(epoch, epochs, batch, batches, batch_size)`` meanwhile.

    Returns:
        The teacher in eval mode and the checkpoint path.
    """
    # A proxy trial's share of the images is the students' economy, not the teacher's.
    cfg = replace(cfg, dataset=replace(cfg.dataset, train_fraction=1.0))
    path = teacher_path(cfg, num_classes, home)
    if cfg.teacher.checkpoint:
        return load_teacher(path, num_classes), path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            train_and_save_teacher(cfg, num_classes, home, path, on_epoch, on_batch)
    return load_teacher(path, num_classes), path


def train_and_save_teacher(
    cfg: TrialConfig,
    num_classes: int,
    home: Path,
    path: Path,
    on_epoch: EpochLog | None = None,
    on_batch: BatchLog | None = None,
) -> float:
    """Train a ResNet18 from scratch, log it as its own MLflow run, save its best weights.

    Returns:
        The teacher's best validation accuracy.
    """
    train_cfg = teacher_train_config(cfg.teacher, cfg.train)
    # The students' data path (decoded cache + batched augmentation when dataset.cache):
    # a from-scratch teacher runs many epochs, the last place to decode JPEGs every epoch.
    data = trial_data(replace(cfg, train=train_cfg), home, resolve_device(train_cfg.device))
    tracker = Tracker(tracking_uri(home), TEACHER_EXPERIMENT, artifact_location(home))
    params = {k: v for k, v in flatten(cfg).items() if k.startswith(("teacher.", "dataset."))}
    run_id = tracker.start_run(
        f"resnet18-{path.stem.split('-')[-1]}",
        params,
        {"sweep.role": "teacher", "checkpoint": str(path)},
    )
    status = "FAILED"
    try:

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            tracker.log_metrics(run_id, metrics, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, train_cfg.epochs, metrics)

        def on_batch_end(epoch: int, batch: int, batches: int) -> None:
            if on_batch is not None:
                on_batch(epoch, train_cfg.epochs, batch, batches, train_cfg.batch_size)

        _, result = train_teacher(
            data, num_classes, train_cfg, on_epoch_end=on_epoch_end, on_batch_end=on_batch_end
        )
        save_state_dict(result.state_dict, path)
        tracker.log_metrics(
            run_id,
            {"val_acc": result.val_acc, "train_seconds": result.train_seconds},
            step=len(result.history),
        )
        status = "FINISHED"
        return result.val_acc
    finally:
        tracker.client.set_terminated(run_id, status=status)
