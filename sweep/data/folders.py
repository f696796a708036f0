"""Reading image folders in the food-11 layout or the class-per-folder layout.

food-11: ``root/training/<label>_<index>.jpg`` (and ``validation/``), with unlabeled
``root/evaluation/0000.jpg ...``. Class-per-folder: ``root/<split>/<class_name>/*.jpg``.
The layout is read off ``training/``: image files directly inside it mean food-11, class
sub-folders mean class-per-folder. Only file names are read here, never pixels, so a scan of
a large data set stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sweep.errors import DataError

SPLITS = ("training", "validation", "evaluation")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})


@dataclass(frozen=True)
class Sample:
    """One image file and its class index (``None`` for unlabeled evaluation images)."""

    path: Path
    label: int | None


def _visible(path: Path) -> bool:
    # Hidden entries (.DS_Store, .ipynb_checkpoints, our own .complete marker) are never data.
    return not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by path."""
    return sorted(
        p
        for p in folder.iterdir()
        if _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _class_dirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if _visible(p) and p.is_dir())


def _split_dir(root: Path, split: str) -> Path:
    """Return ``root/split`` after checking that both exist."""
    if split not in SPLITS:
        raise DataError(f"{root}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    for folder, what in ((root, "data folder"), (root / split, "split folder")):
        if folder.exists() and not folder.is_dir():
            raise DataError(f"{folder}: is a file, not a {what}")
        if not folder.is_dir():
            raise DataError(f"{folder}: {what} does not exist")
    return root / split


def _prefix_label(path: Path) -> int:
    """The integer before the first ``_`` of a food-11 file name (``3_120.jpg`` -> 3)."""
    prefix, sep, _ = path.stem.partition("_")
    if not sep or not (prefix.isascii() and prefix.isdigit()):
        raise DataError(
            f"{path}: file name has no integer label prefix (expected <label>_<index>.jpg, "
            "e.g. 3_120.jpg)"
        )
    return int(prefix)


def _no_images(folder: Path) -> DataError:
    exts = "/".join(sorted(IMAGE_EXTENSIONS))
    return DataError(f"{folder}: no images ({exts}) found")


def _is_folder_layout(training: Path) -> bool:
    # Loose images decide for food-11 even if stray sub-folders sit beside them.
    return not _image_files(training) and bool(_class_dirs(training))


def _scan_flat(folder: Path, labeled: bool) -> list[Sample]:
    files = _image_files(folder)
    if not files:
        raise _no_images(folder)
    return [Sample(p, _prefix_label(p) if labeled else None) for p in files]


def _scan_class_folders(folder: Path, names: list[str]) -> list[Sample]:
    index = {name: i for i, name in enumerate(names)}
    samples: list[Sample] = []
    for class_dir in _class_dirs(folder):
        if class_dir.name not in index:
            raise DataError(
                f"{class_dir}: class folder not present in {folder.parent / 'training'}"
            )
        samples.extend(Sample(p, index[class_dir.name]) for p in _image_files(class_dir))
    if not samples:
        if _image_files(folder):
            raise DataError(
                f"{folder}: images lie loose in the folder, but training/ uses class folders"
            )
        raise _no_images(folder)
    return sorted(samples, key=lambda s: s.path)


def _scan_training(root: Path) -> tuple[list[Sample], list[str]]:
    """Scan ``training/`` and return its samples and the class names they imply."""
    folder = _split_dir(root, "training")
    if _is_folder_layout(folder):
        names = [d.name for d in _class_dirs(folder)]
        return _scan_class_folders(folder, names), names
    samples = _scan_flat(folder, labeled=True)
    max_label = max(s.label for s in samples if s.label is not None)
    return samples, [str(i) for i in range(max_label + 1)]


def scan_split(root: Path, split: str) -> list[Sample]:
    """List the images of one split with their labels.

    Args:
        root: the data set folder holding ``training/``, ``validation/`` and optionally
            ``evaluation/``.
        split: one of :data:`SPLITS`.

    Returns:
        The split's samples sorted by path. Labels index :func:`class_names`; evaluation
        images laid out flat are unlabeled (``label is None``; the Id is the file stem).

    Raises:
        DataError: the root or split folder is missing, the split holds no images, a food-11
            file name lacks its integer label prefix, or validation holds a label (or class
            folder) that training does not.
    """
    root = Path(root)
    train_samples, names = _scan_training(root)
    if split == "training":
        return train_samples
    folder = _split_dir(root, split)
    if split == "evaluation" and _image_files(folder):
        return _scan_flat(folder, labeled=False)
    if _is_folder_layout(root / "training"):
        return _scan_class_folders(folder, names)
    samples = _scan_flat(folder, labeled=True)
    seen = {s.label for s in train_samples}
    for sample in samples:
        if sample.label not in seen:
            raise DataError(
                f"{folder}: label {sample.label} ({sample.path.name}) does not occur in "
                f"{root / 'training'}"
            )
    return samples


def class_names(root: Path) -> list[str]:
    """Return the class names of a data set, indexed by label.

    Args:
        root: the data set folder.

    Returns:
        food-11 layout: ``["0", "1", ..., str(max training label)]``; class-per-folder
        layout: the class folder names of ``training/`` in sorted order.

    Raises:
        DataError: as :func:`scan_split` for the training split.
    """
    return _scan_training(Path(root))[1]


def check_readable(root: Path, split: str = "training", sample: int = 16) -> None:
    """Fail fast on a split none of whose first images decode (a copy gone wrong).

    Opens at most ``sample`` images; the decoded cache skips and lists single bad files later.

    Raises:
        DataError: naming the folder, when not one of the sampled images can be decoded.
    """
    check_decodable([s.path for s in scan_split(root, split)], root / split, sample)


def check_decodable(images: list[Path], folder: Path, sample: int = 16) -> None:
    """Fail fast when none of the first ``sample`` of ``images`` (from ``folder``) decode.

    Raises:
        DataError: naming the folder and the first image's reason.
    """
    problems = []
    for path in images[:sample]:
        try:
            with Image.open(path) as image:
                image.convert("RGB").load()
            return
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}")
    if problems:
        raise DataError(
            f"{folder}: none of the first {len(problems)} images can be decoded "
            f"({problems[0]}); is the folder a copy of the images?"
        )


def images_to_label(path: Path) -> tuple[Path, list[Path]]:
    """The folder ``sweep predict`` labels and its images: ``path/evaluation`` when ``path``
    is a data root that has one, else ``path`` itself.

    Raises:
        DataError: ``path`` is missing or a file, or the folder holds no images.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: is a file, not a folder of images or a data folder")
    if not path.is_dir():
        raise DataError(f"{path}: folder does not exist")
    folder = path / "evaluation" if (path / "evaluation").is_dir() else path
    images = _image_files(folder)
    if not images:
        raise DataError(
            f"{path}: holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
            "neither directly nor in evaluation/"
        )
    return folder, images
