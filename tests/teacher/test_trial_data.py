"""Tests of sweep.teacher.trial_data: each setting picks its data path, and both paths serve the
same validation images."""

from __future__ import annotations

from pathlib import Path

import torch

from sweep.config import build_config
from sweep.data import DataBundle
from sweep.data.batches import CachedData
from sweep.teacher.trial_data import trial_data, uses_cached_teacher

CPU = torch.device("cpu")


def _cfg(food11_dir: Path, **settings: object):
    base = {
        "dataset.root": str(food11_dir),
        "dataset.image_size": 16,
        "dataset.resize": 16,
        "batch_size": 8,
    }
    return build_config({**base, **settings})


def test_cached_teacher_needs_the_cache_and_a_positive_alpha(food11_dir: Path) -> None:
    assert uses_cached_teacher(_cfg(food11_dir))
    assert not uses_cached_teacher(_cfg(food11_dir, **{"kd.teacher_mode": "online"}))
    assert not uses_cached_teacher(_cfg(food11_dir, **{"dataset.cache": False}))
    assert not uses_cached_teacher(_cfg(food11_dir, **{"kd.alpha": 0.0}))


def test_paths_by_setting_serve_the_same_validation_set(food11_dir: Path, tmp_path: Path) -> None:
    cached = trial_data(_cfg(food11_dir), tmp_path, CPU, progress=False)
    pil = trial_data(_cfg(food11_dir, **{"dataset.cache": False}), tmp_path, CPU)
    assert isinstance(cached, CachedData) and isinstance(pil, DataBundle)
    assert (tmp_path / "cache").is_dir()
    assert cached.num_classes == pil.num_classes == 3
    assert len(cached.val.dataset) == len(pil.val.dataset) == 24
    cached_images = torch.cat([images for images, _ in cached.val])
    pil_images = torch.cat([images for images, _ in pil.val])
    cached_labels = torch.cat([labels for _, labels in cached.val])
    pil_labels = torch.cat([labels for _, labels in pil.val])
    assert torch.equal(cached_labels, pil_labels)
    # Same files, same order; pixels within JPEG-decoding and resampling noise.
    assert (cached_images - pil_images).abs().mean() < 0.05
    images, labels = next(iter(cached.train))  # alpha > 0 but no soft labels given: 2 parts
    assert images.shape == (8, 3, 16, 16) and labels.dtype == torch.int64
