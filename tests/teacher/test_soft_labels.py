"""Tests of sweep.teacher.soft_labels and sweep.data.batches: cached teacher logits replay exactly
the images a trial regenerates, per view; the cache is keyed and built once."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.config import DatasetConfig
from sweep.data.augment import augment_batch, sample_params
from sweep.data.batches import TrainBatches, view_seeds
from sweep.data.decoded import decoded_split
from sweep.models.weights import save_state_dict
from sweep.teacher.network import build_teacher
from sweep.teacher.soft_labels import soft_label_fingerprint, soft_labels

CFG = DatasetConfig(
    name="food11",
    image_size=16,
    resize=20,
    train_crop="random_resized",
    crop_scale_min=0.5,
    hflip=True,
    color_jitter=0.2,
)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> dict:
    tmp = tmp_path_factory.mktemp("soft")
    torch.manual_seed(0)
    teacher = build_teacher(3).eval()
    path = save_state_dict(teacher.state_dict(), tmp / "teacher.ckpt")
    split = decoded_split(food11_dir, "training", CFG.resize, tmp / "cache", progress=False)
    return {"tmp": tmp, "teacher": teacher, "path": path, "split": split}


def _labels(setup: dict, cache: Path | None = None, **changes: object):
    options = {"views": 3, "seed": 7, **changes}
    return soft_labels(
        setup["teacher"],
        setup["path"],
        setup["split"],
        CFG,
        cache_dir=cache or setup["tmp"] / "cache",
        device=CPU,
        progress=False,
        **options,
    )


def test_cached_logits_equal_an_online_forward_on_the_regenerated_batch(setup: dict) -> None:
    soft = _labels(setup)
    assert soft.logits.shape == (3, len(setup["split"].labels), 3)
    assert soft.logits.dtype == np.float16
    data = TrainBatches(
        setup["split"], CFG, batch_size=10, device=CPU, seed=7, views=3, soft_labels=soft
    )
    for epoch in (0, 1, 4):  # epoch 4 replays view 1
        data.set_epoch(epoch)
        images, labels, logits = next(iter(data))
        with torch.no_grad():
            online = setup["teacher"](images)
        assert torch.allclose(logits, online, atol=2e-2, rtol=2e-3), epoch


def test_views_differ_and_cycle_with_epochs(setup: dict) -> None:
    soft = _labels(setup)
    data = TrainBatches(
        setup["split"], CFG, batch_size=64, device=CPU, seed=7, views=3, soft_labels=soft
    )
    batches = []
    for epoch in range(4):
        data.set_epoch(epoch)
        images, _, logits = next(iter(data))
        batches.append((images, logits))
    assert not torch.equal(batches[0][1], batches[1][1])  # another view, other logits
    # Epoch 3 is view 0 again: each image is regenerated exactly, whatever the shuffle.
    first = {tuple(img.flatten()[:8].tolist()) for img in batches[0][0]}
    again = {tuple(img.flatten()[:8].tolist()) for img in batches[3][0]}
    assert first == again


def test_fingerprint_follows_what_shapes_the_logits(setup: dict) -> None:
    split = setup["split"]
    base = soft_label_fingerprint(split, CFG, "digest", 3, 7)
    assert soft_label_fingerprint(split, CFG, "digest", 3, 7) == base
    assert soft_label_fingerprint(split, CFG, "other-teacher", 3, 7) != base
    assert soft_label_fingerprint(split, CFG, "digest", 4, 7) != base
    assert soft_label_fingerprint(split, CFG, "digest", 3, 8) != base
    assert soft_label_fingerprint(split, replace(CFG, hflip=False), "digest", 3, 7) != base
    # Settings that do not change the teacher's input leave the cache valid.
    assert soft_label_fingerprint(split, replace(CFG, root="/elsewhere"), "digest", 3, 7) == base


def test_second_call_loads_without_recomputing(setup: dict, tmp_path: Path) -> None:
    first = _labels(setup, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = _labels(setup, tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(first.logits), np.asarray(second.logits))


def _build_in_child(args: tuple) -> str:
    food, cache, teacher_path = args
    teacher = build_teacher(3)
    teacher.load_state_dict(torch.load(teacher_path, weights_only=True))
    split = decoded_split(Path(food), "training", CFG.resize, Path(cache), progress=False)
    soft = soft_labels(
        teacher.eval(),
        Path(teacher_path),
        split,
        CFG,
        views=2,
        seed=1,
        cache_dir=Path(cache),
        device=CPU,
        progress=False,
    )
    return f"{soft.path}:{float(np.asarray(soft.logits, dtype=np.float64).sum())}"


def test_two_processes_build_one_cache(setup: dict, food11_dir: Path, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        job = (str(food11_dir), str(tmp_path), str(setup["path"]))
        results = pool.map(_build_in_child, [job, job])
    assert results[0] == results[1]
    temporary = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert temporary == []
    assert len(list(tmp_path.glob("soft-labels-*.npy"))) == 1


def test_view_seeds_are_fixed_by_the_seed() -> None:
    assert view_seeds(7, 3) == view_seeds(7, 3)
    assert view_seeds(7, 3) != view_seeds(8, 3)
    assert view_seeds(7, 4)[:3] != view_seeds(7, 3) or len(set(view_seeds(7, 4))) == 4


def test_augmentation_uses_index_and_view_seed_only(setup: dict) -> None:
    split = setup["split"]
    images = torch.from_numpy(np.ascontiguousarray(split.images[[3, 5]]))
    seed = view_seeds(7, 3)[1]
    pair = augment_batch(images, sample_params(np.array([3, 5]), seed, CFG, CFG.resize), 16)
    alone = augment_batch(images[1:], sample_params(np.array([5]), seed, CFG, CFG.resize), 16)
    assert torch.equal(pair[1], alone[0])
