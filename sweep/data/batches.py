"""Batches from the decoded cache, augmented on the training device.

The uint8 images stay memory-mapped (shared by every process on the host through the page
cache); each batch is gathered, moved to the device as uint8 (a quarter of float32's bytes)
and cropped, flipped, jittered and normalised there in one batched pass. A training epoch
uses augmentation view ``epoch mod views``: every image's crop in that view is a function of
(image index, view seed) alone, which is what lets the teacher's logits be computed once per
view and replayed by every trial (:mod:`sweep.teacher.soft_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sweep.config import DatasetConfig
from sweep.data.augment import augment_batch, center_batch, sample_params
from sweep.data.decoded import DecodedSplit, decoded_split
from sweep.data.folders import class_names
from sweep.data.protocol import TeacherLogits
from sweep.data.subset import train_subset


def view_seeds(seed: int, views: int) -> list[int]:
    """The augmentation seed of each view, derived from the trial seed."""
    return [int(s) for s in np.random.SeedSequence([seed, 0x5EED]).generate_state(views)]


def _gather(split: DecodedSplit, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images of ``indices`` on ``device`` (sorted reads are kinder to the page cache)."""
    order = np.argsort(indices, kind="stable")
    images = np.empty((len(indices), *split.images.shape[1:]), dtype=np.uint8)
    images[order] = split.images[indices[order]]
    batch = torch.from_numpy(images)
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch


class TrainBatches:
    """Shuffled, augmented training batches; with soft labels, also the teacher's logits.

    Args:
        split: the decoded training split.
        cfg: crop, flip and jitter settings.
        batch_size: images per batch.
        device: where batches are built and returned.
        seed: drives the shuffling and the views' augmentation seeds.
        views: distinct augmentation views, cycled over epochs.
        soft_labels: the teacher's cached logits per view, or None (online teacher).

    With ``cfg.train_fraction`` below 1 an epoch visits only the trial's share of the images
    (:func:`~sweep.data.subset.train_subset`); they keep their indices into the split, so
    their crops and soft labels are those of the whole split's.
    """

    def __init__(
        self,
        split: DecodedSplit,
        cfg: DatasetConfig,
        batch_size: int,
        device: torch.device,
        seed: int,
        views: int,
        soft_labels: TeacherLogits | None = None,
    ) -> None:
        self.split, self.cfg, self.batch_size, self.device = split, cfg, batch_size, device
        self.seed = seed
        self.seeds = view_seeds(seed, views)
        self.soft_labels = soft_labels
        self.yields_teacher_logits = soft_labels is not None
        self.epoch = 0
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64))
        self.indices = train_subset(split.labels, cfg.train_fraction, seed)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle order and the augmentation view of the coming epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        view = self.epoch % len(self.seeds)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices))
        order = self.indices[order]
        source_size = self.split.images.shape[1]
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            images = _gather(self.split, indices, self.device)
            params = sample_params(indices, self.seeds[view], self.cfg, source_size)
            batch = augment_batch(images, params, self.cfg.image_size)
            labels = self.labels[indices].to(self.device, non_blocking=True)
            if self.soft_labels is None:
                yield batch, labels
            else:
                yield batch, labels, self.soft_labels.batch(view, indices)


class EvalBatches:
    """Center-cropped batches in file order, ``(images, labels)``."""

    def __init__(
        self, split: DecodedSplit, image_size: int, batch_size: int, device: torch.device
    ) -> None:
        self.split, self.image_size = split, image_size
        self.batch_size, self.device = batch_size, device
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64))
        self.dataset = split.labels  # len(loader.dataset): the sample count, as DataLoader has

    def __len__(self) -> int:
        return math.ceil(len(self.split.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            indices = np.arange(start, min(start + self.batch_size, len(self.labels)))
            images = _gather(self.split, indices, self.device)
            yield center_batch(images, self.image_size), self.labels[indices].to(self.device)


@dataclass
class CachedData:
    """What ``train()`` needs, served from the decoded cache (same fields as DataBundle)."""

    train: TrainBatches
    val: EvalBatches
    num_classes: int
    class_names: list[str]
    root: Path
    image_size: int
    skipped: list[str]


def build_cached_data(
    cfg: DatasetConfig,
    root: Path,
    cache_dir: Path,
    batch_size: int,
    device: torch.device,
    seed: int,
    views: int,
    soft_labels: TeacherLogits | None = None,
    progress: bool = True,
) -> CachedData:
    """Decode (once) and serve the training and validation splits from the cache."""
    train = decoded_split(root, "training", cfg.resize, cache_dir, progress=progress)
    val = decoded_split(root, "validation", cfg.resize, cache_dir, progress=progress)
    names = class_names(root)
    return CachedData(
        train=TrainBatches(train, cfg, batch_size, device, seed, views, soft_labels),
        val=EvalBatches(val, cfg.image_size, batch_size, device),
        num_classes=len(names),
        class_names=names,
        root=root,
        image_size=cfg.image_size,
        skipped=train.skipped + val.skipped,
    )
