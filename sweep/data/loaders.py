"""Transforms and DataLoaders over the image folders of :mod:`sweep.data.folders`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from sweep.config import DatasetConfig
from sweep.data.demo import DEMO_CLASSES, ensure_demo_dataset
from sweep.data.folders import Sample, class_names, scan_split
from sweep.data.subset import train_subset
from sweep.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_rgb(image: Image.Image) -> Image.Image:
    # Module-level (not a lambda) so the transform pickles into DataLoader worker processes.
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_sizes(cfg: DatasetConfig) -> None:
    if cfg.image_size < 1:
        raise DataError(f"dataset.image_size: must be at least 1, got {cfg.image_size}")
    if cfg.resize < cfg.image_size:
        raise DataError(
            f"dataset.resize: {cfg.resize} is smaller than dataset.image_size "
            f"{cfg.image_size}; the crop would not fit in the resized image"
        )
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        raise DataError(f"dataset.crop_scale_min: must be in (0, 1], got {cfg.crop_scale_min}")


def _finish() -> list[Callable]:
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def eval_transform(cfg: DatasetConfig) -> Callable:
    """Return the deterministic transform for validation and evaluation images.

    Args:
        cfg: the dataset settings (``resize``, ``image_size``).

    Returns:
        PIL image -> float32 tensor ``[3, image_size, image_size]``: RGB, short side resized to
        ``cfg.resize``, center crop, ImageNet normalisation.
    """
    _check_sizes(cfg)
    return T.Compose([_to_rgb, T.Resize(cfg.resize), T.CenterCrop(cfg.image_size), *_finish()])


def train_transform(cfg: DatasetConfig) -> Callable:
    """Return the augmenting transform for training images.

    Args:
        cfg: the dataset settings (``resize``, ``image_size``, ``train_crop``,
            ``crop_scale_min``, ``hflip``).

    Returns:
        PIL image -> float32 tensor ``[3, image_size, image_size]``: RGB, short side resized to
        ``cfg.resize``, then the ``cfg.train_crop`` crop, optional horizontal flip, ImageNet
        normalisation. Randomness comes from torch's RNG (the global one in the main
        process, the worker seed in DataLoader workers).
    """
    _check_sizes(cfg)
    size = cfg.image_size
    crops: dict[str, Callable] = {
        "center": T.CenterCrop(size),
        "random": T.RandomCrop(size),
        "random_resized": T.RandomResizedCrop(size, scale=(cfg.crop_scale_min, 1.0)),
    }
    if cfg.train_crop not in crops:
        raise DataError(f"dataset.train_crop: unknown crop {cfg.train_crop!r}")
    steps: list[Callable] = [_to_rgb, T.Resize(cfg.resize), crops[cfg.train_crop]]
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + _finish())


class ImageDataset(Dataset):
    """Samples read from disk and transformed; yields ``(image, label)`` or ``(image, id)``."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, *, ids: bool) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.ids = ids

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str | None]:
        sample = self.samples[index]
        try:
            with Image.open(sample.path) as image:
                rgb = image.convert("RGB")
        except OSError as exc:
            raise DataError(f"{sample.path}: cannot read image ({exc})") from exc
        return self.transform(rgb), sample.path.stem if self.ids else sample.label


def _collate_ids(batch: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    # default_collate would hand the ids back as a tuple; callers are promised a list.
    images, ids = zip(*batch, strict=True)
    return torch.stack(images), list(ids)


def _loader(
    dataset: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """The one place DataLoaders are built."""
    # The generator fixes the shuffle order and the worker seeds, so a seed reproduces a run.
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=generator,
        collate_fn=_collate_ids if dataset.ids else None,
    )


def resolve_root(cfg: DatasetConfig, home: Path) -> Path:
    """Return the data set folder, building the demo data set on first use.

    Args:
        cfg: the dataset settings.
        home: the sweep home folder; the demo lives in ``home/data/demo``.

    Returns:
        ``cfg.root`` with ``~`` expanded when set, else the demo folder for ``name == "demo"``.

    Raises:
        DataError: ``name`` is ``food11`` and ``root`` is not set.
    """
    if cfg.root:
        return Path(cfg.root).expanduser()
    if cfg.name == "demo":
        return ensure_demo_dataset(Path(home) / "data" / "demo")
    raise DataError(
        "dataset.root: not set; point it at a food-11 folder "
        "(YAML dataset.root, --data-dir or --set dataset.root=DIR)"
    )


def planned_num_classes(cfg: DatasetConfig, home: Path) -> int:
    """The number of classes, without writing anything (the demo is not built for it).

    Raises:
        DataError: ``dataset.root`` is not set for food-11, or its folder cannot be read.
    """
    if not cfg.root and cfg.name == "demo":
        return DEMO_CLASSES
    return dataset_num_classes(cfg, home)


def dataset_num_classes(cfg: DatasetConfig, home: Path) -> int:
    """Return the number of classes from the training file names (no image is opened).

    Args:
        cfg: the dataset settings.
        home: the sweep home folder (see :func:`resolve_root`).

    Returns:
        ``len(class_names(root))``.
    """
    return len(class_names(resolve_root(cfg, home)))


@dataclass
class DataBundle:
    """The training and validation loaders of one trial and what they hold."""

    train: DataLoader
    val: DataLoader
    num_classes: int
    class_names: list[str]
    root: Path
    image_size: int


def build_data(
    cfg: DatasetConfig,
    batch_size: int,
    *,
    home: Path,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataBundle:
    """Build the training and validation loaders.

    Args:
        cfg: the dataset settings.
        batch_size: images per batch (the last batch may be smaller).
        home: the sweep home folder (see :func:`resolve_root`).
        seed: seeds the training shuffle order and the worker seeds.
        num_workers: DataLoader worker processes (0 loads in the main process).
        pin_memory: pin batches for faster host-to-GPU copies.

    Returns:
        A DataBundle whose loaders yield ``(float32 [B, 3, S, S], int64 [B])``; training is
        shuffled and augmented, validation is neither.

    Raises:
        DataError: the folder is missing or malformed, or the sizes in ``cfg`` do not fit.
    """
    root = resolve_root(cfg, home)
    names = class_names(root)
    samples = scan_split(root, "training")
    kept = train_subset([s.label for s in samples], cfg.train_fraction, seed)
    train_set = ImageDataset([samples[i] for i in kept], train_transform(cfg), ids=False)
    val_set = ImageDataset(scan_split(root, "validation"), eval_transform(cfg), ids=False)
    make = partial(_loader, seed=seed, num_workers=num_workers, pin_memory=pin_memory)
    return DataBundle(
        train=make(train_set, batch_size, shuffle=True),
        val=make(val_set, batch_size, shuffle=False),
        num_classes=len(names),
        class_names=names,
        root=root,
        image_size=cfg.image_size,
    )


def prediction_loader(
    images: list[Path], cfg: DatasetConfig, batch_size: int, num_workers: int = 0
) -> DataLoader:
    """Build a loader over unlabeled images (``sweep predict``), in the order given.

    Args:
        images: the image files.
        cfg: the dataset settings (image size and resize of the eval transform).
        batch_size: images per batch.
        num_workers: DataLoader worker processes.

    Returns:
        A loader yielding ``(float32 [B, 3, S, S], ids)``, ``ids`` a ``list[str]`` of file
        stems, with the eval transform.
    """
    samples = [Sample(path, None) for path in images]
    dataset = ImageDataset(samples, eval_transform(cfg), ids=True)
    return _loader(
        dataset, batch_size, shuffle=False, seed=0, num_workers=num_workers, pin_memory=False
    )
