"""Tests of sweep.data.decoded: decode once into a memory-mapped uint8 cache."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import sweep.data.decoded as decoded_module
from sweep.config import DatasetConfig
from sweep.data.augment import center_batch
from sweep.data.decoded import DecodedSplit, decoded_split, split_fingerprint
from sweep.data.folders import scan_split
from sweep.data.loaders import eval_transform
from sweep.errors import DataError

SIZES = [(40, 30), (30, 50), (64, 64), (50, 20), (33, 47), (24, 36)]


def _picture(width: int, height: int, seed: int) -> Image.Image:
    """A smooth colour gradient with mild noise: JPEG- and resize-friendly, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-1.5, 1.5, size=(2, 3))
    pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    pixels = pixels + rng.normal(0, 6, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _picture(*size, seed).save(path, quality=95)


def _food11(root: Path) -> Path:
    """12 training, 6 validation, 3 evaluation JPEGs of varied sizes and aspects."""
    seed = 0
    for split, per_label in (("training", 4), ("validation", 2)):
        for label in range(3):
            for i in range(per_label):
                _write(root / split / f"{label}_{i}.jpg", SIZES[seed % len(SIZES)], seed)
                seed += 1
    for i in range(3):
        _write(root / "evaluation" / f"{i:04d}.jpg", SIZES[i], 100 + i)
    return root


@pytest.fixture
def food(tmp_path: Path) -> Path:
    return _food11(tmp_path / "food")


def _reference(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    return np.asarray(T.CenterCrop(size)(T.Resize(size)(rgb)), dtype=np.int16)


def _npy(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.npy"))


def test_matches_resize_then_center_crop(food: Path, tmp_path: Path) -> None:
    split = decoded_split(food, "training", 24, tmp_path / "cache", progress=False)
    samples = scan_split(food, "training")
    assert split.images.shape == (len(samples), 24, 24, 3)
    assert split.images.dtype == np.uint8
    for sample, image in zip(samples, split.images, strict=True):
        diff = np.abs(image.astype(np.int16) - _reference(sample.path, 24))
        assert diff.mean() < 1.0, sample.path


def test_center_batch_of_the_cache_is_the_eval_transform(food: Path, tmp_path: Path) -> None:
    cfg = DatasetConfig(image_size=20, resize=24)
    split = decoded_split(food, "validation", cfg.resize, tmp_path / "cache", progress=False)
    batch = center_batch(torch.from_numpy(np.array(split.images)), cfg.image_size)
    transform = eval_transform(cfg)
    for sample, image in zip(scan_split(food, "validation"), batch, strict=True):
        with Image.open(sample.path) as pil:
            expected = transform(pil)
        # One grey level is 1 / (255 * 0.225) ~ 0.017 after normalisation.
        assert (image - expected).abs().mean() < 0.02, sample.path


def test_large_jpeg_decoded_at_reduced_scale_keeps_quality(tmp_path: Path) -> None:
    root = tmp_path / "food"
    _write(root / "training" / "0_0.jpg", (800, 600), 1)  # draft kicks in: 600 >> 2 * 32
    _write(root / "validation" / "0_0.jpg", (30, 40), 2)
    split = decoded_split(root, "training", 32, tmp_path / "cache", progress=False)
    reference = _reference(root / "training" / "0_0.jpg", 32)
    assert np.abs(split.images[0].astype(np.int16) - reference).mean() < 3.0


def test_labels_ids_in_scan_order(food: Path, tmp_path: Path) -> None:
    split = decoded_split(food, "validation", 16, tmp_path / "cache", progress=True)
    samples = scan_split(food, "validation")
    assert split.ids == [s.path.stem for s in samples]
    assert split.labels.dtype == np.int64
    assert split.labels.tolist() == [s.label for s in samples]
    assert split.skipped == []
    assert split.path == tmp_path / "cache" / f"validation-{split.fingerprint}.npy"


def test_evaluation_is_unlabeled(food: Path, tmp_path: Path) -> None:
    split = decoded_split(food, "evaluation", 16, tmp_path / "cache", progress=False)
    assert split.ids == ["0000", "0001", "0002"]
    assert split.labels.tolist() == [-1, -1, -1]


def test_class_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for split in ("training", "validation"):
        for k, name in enumerate(("apple", "pear")):
            _write(root / split / name / f"{split}{k}.png", (20 + 7 * k, 30), k)
    split = decoded_split(root, "training", 16, tmp_path / "cache", progress=False)
    assert split.labels.tolist() == [0, 1]
    assert split.ids == ["training0", "training1"]


def test_images_are_a_read_only_memmap(food: Path, tmp_path: Path) -> None:
    split = decoded_split(food, "training", 16, tmp_path / "cache", progress=False)
    assert isinstance(split.images, np.memmap)
    assert not split.images.flags.writeable
    with pytest.raises(ValueError):
        split.images[0, 0, 0, 0] = 1


def test_second_call_loads_without_rebuilding(
    food: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = decoded_split(food, "training", 16, cache, progress=False)
    mtime = first.path.stat().st_mtime_ns

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache rebuilt")

    monkeypatch.setattr(decoded_module, "_build", no_build)
    second = decoded_split(food, "training", 16, cache, progress=False)
    assert second.fingerprint == first.fingerprint
    assert second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.images, first.images)


def test_changes_rebuild(food: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    training = food / "training"

    def fingerprint(size: int = 16) -> str:
        return decoded_split(food, "training", size, cache, progress=False).fingerprint

    seen = [fingerprint()]
    assert fingerprint(20) not in seen  # another size
    stat = (training / "0_0.jpg").stat()
    os.utime(training / "0_0.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    seen.append(fingerprint())  # touched
    _write(training / "1_9.jpg", (30, 30), 7)
    seen.append(fingerprint())  # added
    added = decoded_split(food, "training", 16, cache, progress=False)
    assert len(added.ids) == 13 and "1_9" in added.ids
    (training / "2_0.jpg").unlink()
    seen.append(fingerprint())  # removed
    assert len(set(seen)) == len(seen)
    assert len(_npy(cache)) == 5  # one cache per fingerprint, none overwritten


def test_fingerprint_is_16_hex_and_depends_on_size(food: Path) -> None:
    samples = scan_split(food, "training")
    fp = split_fingerprint(samples, 16)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert split_fingerprint(samples, 16) == fp
    assert split_fingerprint(samples, 17) != fp
    assert split_fingerprint(samples[1:], 16) != fp


def test_corrupt_and_truncated_files_are_skipped(
    food: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training = food / "training"
    (training / "0_98.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    buffer = io.BytesIO()
    _picture(64, 64, 3).save(buffer, format="JPEG", quality=95)
    (training / "1_99.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    split = decoded_split(food, "training", 16, tmp_path / "cache", progress=False)
    assert split.skipped == ["training/0_98.jpg", "training/1_99.jpg"]
    assert split.images.shape[0] == len(split.ids) == len(split.labels) == 12
    assert "0_98" not in split.ids and "1_99" not in split.ids
    # The kept rows are the readable files, in order, not shifted by the gaps.
    kept = [s for s in scan_split(food, "training") if s.path.stem in split.ids]
    for sample, image in zip(kept, split.images, strict=True):
        assert np.abs(image.astype(np.int16) - _reference(sample.path, 16)).mean() < 1.0
    [meta] = (tmp_path / "cache").glob("training-*.json")
    assert capsys.readouterr().err == (
        "sweep: training: 2 images could not be decoded and are left out (training/0_98.jpg, "
        f"training/1_99.jpg); {meta} lists them all, with the reasons\n"
    )
    again = decoded_split(food, "training", 16, tmp_path / "cache", progress=False)
    assert again.skipped == split.skipped
    assert capsys.readouterr().err == ""  # told once


def test_all_unreadable_names_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    (root / "training").mkdir(parents=True)
    for i in range(3):
        (root / "training" / f"0_{i}.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=str(root / "training")):
        decoded_split(root, "training", 16, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.npy"))
    assert not list((tmp_path / "cache").glob(".*.tmp*"))


def test_bad_size_is_a_data_error(food: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset.resize"):
        decoded_split(food, "training", 0, tmp_path / "cache", progress=False)


def _build_in_child(root: str, cache: str, barrier: Any, results: Any) -> None:
    built = []
    build = decoded_module._build

    def slow_build(*args: Any, **kwargs: Any) -> None:
        built.append(True)
        time.sleep(0.5)  # hold the lock until the other process is surely waiting on it
        build(*args, **kwargs)

    decoded_module._build = slow_build
    barrier.wait()  # both processes reach the cache at once
    split = decoded_split(Path(root), "training", 16, Path(cache), progress=False)
    images = np.asarray(split.images).tobytes()
    results.put((split.fingerprint, str(split.path), images, bool(built)))


def test_concurrent_builders_make_one_cache(food: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_build_in_child, args=(str(food), str(cache), barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert got[0][:3] == got[1][:3]
    assert sorted(g[3] for g in got) == [False, True]  # one built, the other waited and loaded
    assert len(_npy(cache)) == 1 and len(list(cache.glob("*.json"))) == 1
    assert not list(cache.glob(".*.tmp*"))
    split = decoded_split(food, "training", 16, cache, progress=False)
    assert isinstance(split, DecodedSplit)
    assert np.asarray(split.images).tobytes() == got[0][2]


def test_unwritable_cache_is_a_data_error(
    food: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full_disk)
    with pytest.raises(DataError, match="cannot write the decoded cache"):
        decoded_split(food, "training", 16, tmp_path / "cache", progress=False)


def test_leftovers_of_a_crashed_build_are_removed(food: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    fp = split_fingerprint(scan_split(food, "training"), 16)
    stale = cache / f".training-{fp}.4242.npy.tmp"
    stale.write_bytes(b"half a cache")
    decoded_split(food, "training", 16, cache, progress=False)
    assert not stale.exists()
