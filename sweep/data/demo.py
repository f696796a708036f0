"""The bundled demo data set: scikit-learn's digits written out in the food-11 layout.

``load_digits`` ships inside scikit-learn, so the demo works offline. The folder is built once
under a file lock into a hidden sibling and moved into place with ``os.replace`` only after the
``.complete`` marker is written: concurrent trials wait for one builder, and a crash never
leaves a folder that looks complete.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image

from sweep.errors import DataError

COMPLETE_MARKER = ".complete"
DEMO_IMAGE_SIZE = 32
DEMO_CLASSES = 10  # the digits 0-9
# Fixed so that every machine builds the same split; changing it changes every demo result.
SPLIT_SEED = 0
_JPEG_QUALITY = 95
_DIGIT_MAX = 16.0  # load_digits pixel values run 0..16


def _to_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (0..16) as a 32x32 RGB image."""
    gray = np.clip(np.rint(pixels * (255.0 / _DIGIT_MAX)), 0, 255).astype(np.uint8)
    small = Image.fromarray(gray)  # 2-D uint8 -> mode "L"
    big = small.resize((DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE), Image.Resampling.BILINEAR)
    return big.convert("RGB")


def _write_image(pixels: np.ndarray, path: Path) -> None:
    _to_image(pixels).save(path, format="JPEG", quality=_JPEG_QUALITY)


def _build(target: Path) -> None:
    """Write the whole demo data set into the empty folder ``target``."""
    # Here, not at the top: scikit-learn takes about 0.9 s to import, and every command
    # imports this module while only the demo's first use needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = digits.images, digits.target
    indices = np.arange(len(labels))
    # 60 / 20 / 20, stratified so that every split holds every digit in proportion.
    train_idx, rest_idx = train_test_split(
        indices, test_size=0.4, stratify=labels, random_state=SPLIT_SEED
    )
    val_idx, eval_idx = train_test_split(
        rest_idx, test_size=0.5, stratify=labels[rest_idx], random_state=SPLIT_SEED
    )
    for split, split_idx in (("training", train_idx), ("validation", val_idx)):
        folder = target / split
        folder.mkdir()
        for i in sorted(split_idx):
            # The original load_digits index keeps each file traceable to its source row.
            _write_image(images[i], folder / f"{labels[i]}_{i}.jpg")
    folder = target / "evaluation"
    folder.mkdir()
    rows = []
    for n, i in enumerate(eval_idx):
        image_id = f"{n:04d}"
        _write_image(images[i], folder / f"{image_id}.jpg")
        rows.append((image_id, int(labels[i])))
    with open(target / "evaluation_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Category"])
        writer.writerows(rows)
    (target / COMPLETE_MARKER).write_text("load_digits demo data set\n")


def ensure_demo_dataset(root: Path) -> Path:
    """Write the digits demo data set to ``root`` unless it is already there.

    Layout: ``training/<label>_<i>.jpg`` and ``validation/<label>_<i>.jpg`` (``i`` is the
    ``load_digits`` index), unlabeled ``evaluation/0000.jpg ...`` and
    ``evaluation_labels.csv`` (``Id,Category``) to score evaluation predictions. Images are
    32x32 RGB JPEGs; the split is about 60/20/20, stratified and fixed.

    Args:
        root: the folder to create; its parent is created if needed.

    Returns:
        ``root``.

    Raises:
        DataError: ``root`` exists but is neither the demo data set nor empty.
    """
    root = Path(root).expanduser()
    if (root / COMPLETE_MARKER).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        # Another process may have finished the build while this one waited for the lock.
        if (root / COMPLETE_MARKER).is_file():
            return root
        if root.exists():
            if not root.is_dir() or any(root.iterdir()):
                raise DataError(
                    f"{root}: exists but is not a complete demo data set (no {COMPLETE_MARKER});"
                    " delete it to rebuild"
                )
            root.rmdir()
        # Holding the lock means nobody else is building, so a leftover here is from a crash.
        staging = root.parent / f".{root.name}.building"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            _build(staging)
            os.replace(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return root
