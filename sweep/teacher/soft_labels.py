"""The teacher's soft labels, computed once per study data and replayed by every trial.

Online distillation runs the teacher on every batch of every epoch of every trial: with a
ResNet18 teacher and a 60k-parameter student the teacher is most of each trial's compute.
Here the teacher runs once over ``views`` augmented copies of the training set; view ``v``
of image ``i`` is fully determined by (view seed ``v``, index ``i``), so a trial's epoch
``e`` regenerates exactly those images (view ``e mod views``) and reads the stored logits:
the distillation target matches the image pixel for pixel, at the cost of a lookup.

Stored as ``float16 [views, N, classes]`` (a read-only memory map shared by every process
on the host) plus a JSON of the view seeds, keyed by a fingerprint of everything that
shapes the logits: the decoded split, the augmentation settings, the teacher file's bytes,
the view count and the seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from rich.console import Console
from rich.progress import Progress

from sweep import interrupts
from sweep.config import DatasetConfig
from sweep.data.augment import AUGMENT_VERSION, augment_batch, sample_params
from sweep.data.batches import view_seeds
from sweep.data.decoded import DecodedSplit

_FORMAT = 1
_AUGMENT_FIELDS = ("image_size", "resize", "train_crop", "crop_scale_min", "hflip", "color_jitter")


@dataclass(frozen=True)
class SoftLabels:
    """Cached teacher logits: ``logits[view, index]``."""

    logits: np.ndarray  # float16 [views, N, classes], read-only memmap
    seeds: list[int]
    fingerprint: str
    path: Path

    def batch(self, view: int, indices: np.ndarray) -> torch.Tensor:
        """The stored logits of ``indices`` in ``view``, as float32."""
        return torch.from_numpy(self.logits[view, indices].astype(np.float32))


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (the teacher checkpoint's identity)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def soft_label_fingerprint(
    split: DecodedSplit, cfg: DatasetConfig, teacher_digest: str, views: int, seed: int
) -> str:
    """A short hash of everything that decides the stored logits."""
    augment = {k: v for k, v in asdict(cfg).items() if k in _AUGMENT_FIELDS}
    key = [_FORMAT, AUGMENT_VERSION, split.fingerprint, augment, teacher_digest, views, seed]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _load(path: Path, meta: Path, fingerprint: str) -> SoftLabels:
    seeds = json.loads(meta.read_text())["seeds"]
    return SoftLabels(np.load(path, mmap_mode="r"), seeds, fingerprint, path)


@torch.no_grad()
def _compute(
    teacher: torch.nn.Module,
    split: DecodedSplit,
    cfg: DatasetConfig,
    seeds: list[int],
    device: torch.device,
    batch_size: int,
    out: np.ndarray,
    advance: Callable[[int], None],
) -> None:
    teacher.to(device).eval()
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    source_size = split.images.shape[1]
    count = len(split.labels)
    for view, seed in enumerate(seeds):
        for start in range(0, count, batch_size):
            interrupts.check()
            indices = np.arange(start, min(start + batch_size, count))
            images = torch.from_numpy(np.ascontiguousarray(split.images[indices])).to(device)
            batch = augment_batch(
                images, sample_params(indices, seed, cfg, source_size), cfg.image_size
            )
            if cuda:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = teacher(batch).float()
            out[view, indices] = logits.cpu().numpy().astype(np.float16)
            advance(len(indices))


def soft_labels(
    teacher: torch.nn.Module,
    teacher_path: Path,
    split: DecodedSplit,
    cfg: DatasetConfig,
    *,
    views: int,
    seed: int,
    cache_dir: Path,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = True,
) -> SoftLabels:
    """Load the study's soft labels, computing them first (once, under a lock) if needed.

    Args:
        teacher: the teacher network.
        teacher_path: its checkpoint file (its bytes are part of the cache key).
        split: the decoded training split.
        cfg: the augmentation settings the trials use.
        views: augmented copies of the training set to label.
        seed: the trials' seed (decides the views' augmentation seeds).
        cache_dir: where the cache lives.
        device: where the teacher runs.
        batch_size: teacher batch size.
        progress: show a progress bar while computing.

    Returns:
        The soft labels, memory-mapped.
    """
    digest = file_digest(Path(teacher_path))
    fingerprint = soft_label_fingerprint(split, cfg, digest, views, seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"soft-labels-{fingerprint}.npy"
    meta = path.with_suffix(".json")
    with FileLock(str(path) + ".lock"):
        if meta.exists():
            return _load(path, meta, fingerprint)
        seeds = view_seeds(seed, views)
        num_classes = int(np.max(split.labels)) + 1
        teacher_classes = getattr(getattr(teacher, "fc", None), "out_features", num_classes)
        shape = (views, len(split.labels), max(num_classes, teacher_classes))
        tmp = path.with_name(f".{path.name}.tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        console = Console(stderr=True)  # off a terminal: no bar (it would print a blank line)
        with Progress(
            console=console, disable=not (progress and console.is_terminal), transient=True
        ) as bar:
            task = bar.add_task("teacher soft labels", total=views * len(split.labels))
            _compute(
                teacher, split, cfg, seeds, device, batch_size, out, lambda n: bar.advance(task, n)
            )
        out.flush()
        del out
        os.replace(tmp, path)
        meta_tmp = meta.with_name(f".{meta.name}.tmp")
        meta_tmp.write_text(json.dumps({"seeds": seeds, "views": views, "shape": list(shape)}))
        os.replace(meta_tmp, meta)  # last: its presence means the cache is complete
        return _load(path, meta, fingerprint)
