"""Which data path a trial trains on, chosen from its settings.

- ``dataset.cache: true`` (default): images decoded once into a memory-mapped uint8 cache and
  augmented in batches on the training device; with ``kd.teacher_mode: cached`` (default)
  the teacher's logits come from the soft-label cache instead of a forward pass.
- ``dataset.cache: false``: the PIL path (decode and transform every image every epoch, in
  DataLoader workers), with an online teacher: the reference the cache is measured against.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sweep.config import TrialConfig
from sweep.data import build_data, resolve_root
from sweep.data.batches import build_cached_data
from sweep.data.decoded import decoded_split
from sweep.data.protocol import TrainData
from sweep.distill.distillers import replays_soft_labels
from sweep.paths import cache_dir
from sweep.teacher.soft_labels import SoftLabels, soft_labels


def uses_cached_teacher(cfg: TrialConfig) -> bool:
    """Whether a trial reads the teacher's logits from the soft-label cache.

    Only methods that need nothing but the teacher's logits can (not fitnet or rkd, which
    read its features; not takd or dml, taught by an assistant or a peer).
    """
    cached = cfg.dataset.cache and cfg.kd.teacher_mode == "cached" and cfg.kd.alpha > 0
    return cached and replays_soft_labels(cfg)


def study_soft_labels(
    cfg: TrialConfig,
    home: Path,
    teacher: torch.nn.Module,
    teacher_path: Path,
    device: torch.device,
    progress: bool = True,
) -> SoftLabels:
    """The soft labels for a config's data and views, computed once and then loaded."""
    root = resolve_root(cfg.dataset, home)
    split = decoded_split(root, "training", cfg.dataset.resize, cache_dir(home), progress=progress)
    return soft_labels(
        teacher,
        teacher_path,
        split,
        cfg.dataset,
        views=cfg.kd.views,
        seed=cfg.train.seed,
        cache_dir=cache_dir(home),
        device=device,
        progress=progress,
    )


def trial_data(
    cfg: TrialConfig,
    home: Path,
    device: torch.device,
    soft: SoftLabels | None = None,
    progress: bool = True,
) -> TrainData:
    """The train/val data of a trial: a CachedData or a DataBundle (same fields).

    Args:
        cfg: the trial's settings.
        home: the sweep home folder (data and caches).
        device: the training device (cached batches are built there).
        soft: the soft labels, when the trial uses the cached teacher.
        progress: show progress while a cache is built.
    """
    if not cfg.dataset.cache:
        return build_data(
            cfg.dataset,
            cfg.train.batch_size,
            home=home,
            seed=cfg.train.seed,
            num_workers=cfg.train.num_workers,
            pin_memory=device.type == "cuda",
        )
    return build_cached_data(
        cfg.dataset,
        resolve_root(cfg.dataset, home),
        cache_dir(home),
        cfg.train.batch_size,
        device,
        cfg.train.seed,
        cfg.kd.views,
        soft,
        progress=progress,
    )
