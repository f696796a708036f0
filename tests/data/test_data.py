"""Tests of sweep.data: folder scanning, the demo data set, transforms and loaders."""

from __future__ import annotations

import csv
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sweep.data.demo as demo_module
from sweep.config import DatasetConfig
from sweep.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_data,
    class_names,
    dataset_num_classes,
    ensure_demo_dataset,
    eval_transform,
    evaluation_loader,
    resolve_root,
    scan_split,
    train_transform,
)
from sweep.errors import DataError, SweepError


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(path)


def _food11(root: Path, train: dict[int, int], val: dict[int, int], n_eval: int = 3) -> Path:
    """Write a food-11 tree: ``{label: count}`` per labeled split, ``n_eval`` unlabeled."""
    seed = 0
    for split, counts in (("training", train), ("validation", val)):
        for label, count in counts.items():
            for i in range(count):
                seed += 1
                _jpeg(root / split / f"{label}_{i}.jpg", seed)
    for i in range(n_eval):
        seed += 1
        _jpeg(root / "evaluation" / f"{i:04d}.jpg", seed)
    return root


@pytest.fixture
def food(tmp_path: Path) -> Path:
    return _food11(tmp_path / "food", {0: 4, 1: 3, 2: 5}, {0: 2, 2: 2})


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home folder whose demo data set was built by two threads racing for it."""
    home = tmp_path_factory.mktemp("home")
    root = home / "data" / "demo"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_demo_dataset(root)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [root, root]
    return home


def test_food11_scan_labels_counts_and_order(food: Path) -> None:
    training = scan_split(food, "training")
    assert len(training) == 12
    assert [s.path for s in training] == sorted(s.path for s in training)
    assert all(s.label == int(s.path.name.split("_")[0]) for s in training)
    assert Counter(s.label for s in training) == {0: 4, 1: 3, 2: 5}
    validation = scan_split(food, "validation")
    assert sorted(s.label for s in validation) == [0, 0, 2, 2]
    assert class_names(food) == ["0", "1", "2"]


def test_food11_class_names_span_gaps(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1, 3: 1}, {3: 1}, n_eval=0)
    assert class_names(root) == ["0", "1", "2", "3"]


def test_evaluation_is_unlabeled_with_stem_ids(food: Path) -> None:
    evaluation = scan_split(food, "evaluation")
    assert [s.label for s in evaluation] == [None, None, None]
    assert [s.path.stem for s in evaluation] == ["0000", "0001", "0002"]


def test_extensions_are_case_insensitive_and_others_ignored(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1}, {0: 1}, n_eval=0)
    _jpeg(root / "training" / "1_0.JPEG", 1)
    Image.new("RGB", (8, 8)).save(root / "training" / "1_1.Png")
    (root / "training" / "notes.txt").write_text("not an image")
    (root / "training" / ".DS_Store").write_text("")
    assert [s.label for s in scan_split(root, "training")] == [0, 1, 1]


def test_class_per_folder_scan(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for split, per_class in (("training", 3), ("validation", 1)):
        for name in ("zebra", "apple", "mango"):
            for i in range(per_class):
                _jpeg(root / split / name / f"img{i}.jpg", i)
    assert class_names(root) == ["apple", "mango", "zebra"]
    training = scan_split(root, "training")
    assert len(training) == 9
    assert [s.path for s in training] == sorted(s.path for s in training)
    assert all(s.label == ["apple", "mango", "zebra"].index(s.path.parent.name) for s in training)
    assert [s.label for s in scan_split(root, "validation")] == [0, 1, 2]


def _assert_error(match: str, root: Path, split: str = "training") -> None:
    with pytest.raises(DataError) as info:
        scan_split(root, split)
    message = str(info.value)
    assert isinstance(info.value, SweepError)
    assert "\n" not in message
    assert match in message, message


def test_missing_root(tmp_path: Path) -> None:
    _assert_error(str(tmp_path / "nope"), tmp_path / "nope")


def test_missing_split_folder(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1}, {}, n_eval=0)
    _assert_error(str(root / "validation"), root, "validation")
    _assert_error(str(root / "evaluation"), root, "evaluation")


def test_evaluation_is_optional(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 2}, {0: 1}, n_eval=0)
    assert len(scan_split(root, "training")) == 2
    assert len(scan_split(root, "validation")) == 1
    assert class_names(root) == ["0"]


def test_split_without_images(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1}, {}, n_eval=0)
    (root / "validation").mkdir()
    (root / "validation" / "readme.txt").write_text("x")
    _assert_error(str(root / "validation"), root, "validation")


def test_file_without_label_prefix(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1}, {0: 1}, n_eval=0)
    _jpeg(root / "training" / "pizza_3.jpg", 9)
    _assert_error(str(root / "training" / "pizza_3.jpg"), root)
    (root / "training" / "pizza_3.jpg").rename(root / "training" / "0007.jpg")
    _assert_error("0007.jpg", root)


def test_validation_label_unseen_in_training(tmp_path: Path) -> None:
    root = _food11(tmp_path, {0: 1, 1: 1}, {0: 1, 5: 1}, n_eval=0)
    _assert_error("5_0.jpg", root, "validation")
    _assert_error(str(root / "validation"), root, "validation")


def test_validation_class_folder_unseen_in_training(tmp_path: Path) -> None:
    _jpeg(tmp_path / "training" / "cat" / "a.jpg", 1)
    _jpeg(tmp_path / "validation" / "dog" / "a.jpg", 2)
    _assert_error(str(tmp_path / "validation" / "dog"), tmp_path, "validation")


SMALL = DatasetConfig(name="food11", image_size=16, resize=20)


def test_eval_transform_shape_dtype_and_normalisation() -> None:
    out = eval_transform(SMALL)(Image.new("RGB", (40, 30), (128, 128, 128)))
    assert out.shape == (3, 16, 16)
    assert out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, expected.view(3, 1, 1).expand(3, 16, 16), atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_transforms_make_three_channels(mode: str) -> None:
    image = Image.new(mode, (30, 25))
    assert eval_transform(SMALL)(image).shape == (3, 16, 16)
    assert train_transform(SMALL)(image).shape == (3, 16, 16)


@pytest.mark.parametrize("crop", ["random", "random_resized"])
def test_train_transform_is_random_eval_is_not(tmp_path: Path, crop: str) -> None:
    _jpeg(tmp_path / "x.jpg", 3, size=(48, 40))
    image = Image.open(tmp_path / "x.jpg")
    cfg = DatasetConfig(image_size=16, resize=32, train_crop=crop, hflip=False)
    torch.manual_seed(0)
    train = train_transform(cfg)
    first, second = train(image), train(image)
    assert first.shape == second.shape == (3, 16, 16)
    assert not torch.equal(first, second)
    assert torch.equal(eval_transform(cfg)(image), eval_transform(cfg)(image))


def test_center_train_crop_without_flip_matches_eval(tmp_path: Path) -> None:
    _jpeg(tmp_path / "x.jpg", 4)
    image = Image.open(tmp_path / "x.jpg")
    cfg = DatasetConfig(image_size=16, resize=20, train_crop="center", hflip=False)
    assert torch.equal(train_transform(cfg)(image), eval_transform(cfg)(image))


def test_resize_smaller_than_crop_is_rejected() -> None:
    with pytest.raises(DataError, match="dataset.resize"):
        eval_transform(DatasetConfig(image_size=32, resize=16))


def test_build_data_batches_and_reproducible_order(food: Path) -> None:
    cfg = DatasetConfig(root=str(food), image_size=16, resize=20, train_crop="center", hflip=False)
    bundle = build_data(cfg, batch_size=5, home=food.parent, seed=7)
    assert bundle.num_classes == 3
    assert bundle.class_names == ["0", "1", "2"]
    assert bundle.root == food
    assert bundle.image_size == 16
    batches = list(bundle.train)
    assert [len(y) for _, y in batches] == [5, 5, 2]  # drop_last=False
    images, labels = batches[0]
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64

    def first_batch(seed: int) -> torch.Tensor:
        return next(iter(build_data(cfg, batch_size=12, home=food.parent, seed=seed).train))[0]

    assert torch.equal(first_batch(7), first_batch(7))
    assert not torch.equal(first_batch(7), first_batch(8))

    val_labels = torch.cat([y for _, y in bundle.val]).tolist()
    assert val_labels == [s.label for s in scan_split(food, "validation")]


def test_evaluation_loader_yields_sorted_stem_ids(food: Path) -> None:
    cfg = DatasetConfig(root=str(food), image_size=16, resize=20)
    batches = list(evaluation_loader(cfg, batch_size=2, home=food.parent))
    assert [ids for _, ids in batches] == [["0000", "0001"], ["0002"]]
    assert batches[0][0].shape == (2, 3, 16, 16)


def test_demo_dataset_contents(demo_home: Path) -> None:
    root = demo_home / "data" / "demo"
    sizes = {
        split: len(scan_split(root, split)) for split in ("training", "validation", "evaluation")
    }
    assert sum(sizes.values()) == 1797
    assert abs(sizes["training"] / 1797 - 0.6) < 0.01
    assert abs(sizes["evaluation"] / 1797 - 0.2) < 0.01
    assert class_names(root) == [str(i) for i in range(10)]
    assert {s.label for s in scan_split(root, "validation")} == set(range(10))
    with Image.open(next((root / "training").iterdir())) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    with open(root / "evaluation_labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sizes["evaluation"]
    assert [r["Id"] for r in rows] == [s.path.stem for s in scan_split(root, "evaluation")]
    assert {int(r["Category"]) for r in rows} == set(range(10))
    assert not list(root.parent.glob(".demo.building"))


def test_demo_second_call_is_noop(demo_home: Path) -> None:
    root = demo_home / "data" / "demo"
    marker = root / ".complete"
    some_file = next((root / "validation").iterdir())
    before = (marker.stat().st_mtime_ns, some_file.stat().st_mtime_ns)
    assert ensure_demo_dataset(root) == root
    assert (marker.stat().st_mtime_ns, some_file.stat().st_mtime_ns) == before


def test_demo_crash_leaves_no_complete_looking_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    write = demo_module._write_image

    def failing_write(pixels: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full")
        write(pixels, path)

    monkeypatch.setattr(demo_module, "_write_image", failing_write)
    root = tmp_path / "demo"
    with pytest.raises(OSError, match="disk full"):
        ensure_demo_dataset(root)
    assert not root.exists()
    assert not (tmp_path / ".demo.building").exists()


def test_demo_refuses_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "demo"))):
        ensure_demo_dataset(tmp_path / "demo")
    assert (tmp_path / "demo" / "mine.txt").read_text() == "user data"


def test_resolve_root_demo_and_num_classes(demo_home: Path) -> None:
    cfg = DatasetConfig(name="demo")
    assert resolve_root(cfg, demo_home) == demo_home / "data" / "demo"
    assert dataset_num_classes(cfg, demo_home) == 10


def test_resolve_root_explicit_root_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_root(DatasetConfig(name="demo", root="~/food"), tmp_path / "h") == (
        tmp_path / "food"
    )
    assert not (tmp_path / "h").exists()


def test_resolve_root_food11_without_root() -> None:
    with pytest.raises(DataError, match=r"^dataset\.root: not set"):
        resolve_root(DatasetConfig(name="food11"), Path("/nonexistent-home"))
