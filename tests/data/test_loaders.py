"""Transforms and DataLoaders over the image folders, and where the data root is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import write_jpeg
from sweep.config import DatasetConfig
from sweep.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_data,
    dataset_num_classes,
    eval_transform,
    images_to_label,
    prediction_loader,
    resolve_root,
    scan_split,
    train_transform,
)
from sweep.errors import DataError

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
    write_jpeg(tmp_path / "x.jpg", 3, size=(48, 40))
    image = Image.open(tmp_path / "x.jpg")
    cfg = DatasetConfig(image_size=16, resize=32, train_crop=crop, hflip=False)
    torch.manual_seed(0)
    train = train_transform(cfg)
    first, second = train(image), train(image)
    assert first.shape == second.shape == (3, 16, 16)
    assert not torch.equal(first, second)
    assert torch.equal(eval_transform(cfg)(image), eval_transform(cfg)(image))


def test_center_train_crop_without_flip_matches_eval(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "x.jpg", 4)
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


def test_prediction_loader_yields_sorted_stem_ids(food: Path) -> None:
    cfg = DatasetConfig(image_size=16, resize=20)
    folder, images = images_to_label(food)
    assert folder == food / "evaluation"
    batches = list(prediction_loader(images, cfg, batch_size=2))
    assert [ids for _, ids in batches] == [["0000", "0001"], ["0002"]]
    assert batches[0][0].shape == (2, 3, 16, 16)


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
