"""sweep.data.subset: a proxy trial's seeded, stratified share of the training images, the
same on both data paths (decoded cache and PIL)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.config import DatasetConfig
from sweep.data import build_data
from sweep.data.batches import build_cached_data
from sweep.data.subset import train_subset

LABELS = np.repeat(np.arange(4), [40, 20, 10, 3])


def test_every_class_keeps_its_share_and_the_choice_is_seeded() -> None:
    kept = train_subset(LABELS, 0.5, seed=0)
    assert Counter(LABELS[kept].tolist()) == {0: 20, 1: 10, 2: 5, 3: 2}
    assert np.all(np.diff(kept) > 0)  # ascending, no repeats
    assert np.array_equal(kept, train_subset(LABELS, 0.5, seed=0))
    assert not np.array_equal(kept, train_subset(LABELS, 0.5, seed=1))


def test_a_tiny_share_keeps_one_image_of_every_class() -> None:
    kept = train_subset(LABELS, 0.01, seed=3)
    assert sorted(LABELS[kept].tolist()) == [0, 1, 2, 3]


def test_the_whole_share_is_every_image_in_order() -> None:
    assert np.array_equal(train_subset(LABELS, 1.0, seed=5), np.arange(len(LABELS)))


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_both_data_paths_train_on_the_same_share(
    food11_dir: Path, tmp_path: Path, fraction: float
) -> None:
    cfg = DatasetConfig(
        name="food11",
        root=str(food11_dir),
        image_size=16,
        resize=16,
        train_crop="center",
        hflip=False,
        train_fraction=fraction,
    )
    cached = build_cached_data(
        cfg,
        food11_dir,
        tmp_path / "cache",
        7,
        torch.device("cpu"),
        seed=0,
        views=1,
        progress=False,
    )
    labels = torch.cat([y for _, y in cached.train]).tolist()
    pil = build_data(cfg, 7, home=tmp_path, seed=0)
    pil_labels = torch.cat([y for _, y in pil.train]).tolist()
    # 16 training images in each of 3 classes.
    assert Counter(labels) == Counter(pil_labels) == {c: int(16 * fraction) for c in range(3)}
    assert len(cached.train) == len(pil.train) == -(-int(48 * fraction) // 7)
    # Validation is always whole.
    assert sum(len(y) for _, y in cached.val) == sum(len(y) for _, y in pil.val) == 24
