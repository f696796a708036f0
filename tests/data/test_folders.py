"""Reading image folders: the food-11 and class-per-folder layouts, and what is refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_jpeg, write_labeled_tree
from sweep.data import (
    class_names,
    images_to_label,
    scan_split,
)
from sweep.errors import DataError, SweepError


def _assert_error(match: str, root: Path, split: str = "training") -> None:
    with pytest.raises(DataError) as info:
        scan_split(root, split)
    message = str(info.value)
    assert isinstance(info.value, SweepError)
    assert "\n" not in message
    assert match in message, message


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
    root = write_labeled_tree(tmp_path, {0: 1, 3: 1}, {3: 1}, n_eval=0)
    assert class_names(root) == ["0", "1", "2", "3"]


def test_evaluation_is_unlabeled_with_stem_ids(food: Path) -> None:
    evaluation = scan_split(food, "evaluation")
    assert [s.label for s in evaluation] == [None, None, None]
    assert [s.path.stem for s in evaluation] == ["0000", "0001", "0002"]


def test_extensions_are_case_insensitive_and_others_ignored(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 1}, {0: 1}, n_eval=0)
    write_jpeg(root / "training" / "1_0.JPEG", 1)
    Image.new("RGB", (8, 8)).save(root / "training" / "1_1.Png")
    (root / "training" / "notes.txt").write_text("not an image")
    (root / "training" / ".DS_Store").write_text("")
    assert [s.label for s in scan_split(root, "training")] == [0, 1, 1]


def test_class_per_folder_scan(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for split, per_class in (("training", 3), ("validation", 1)):
        for name in ("zebra", "apple", "mango"):
            for i in range(per_class):
                write_jpeg(root / split / name / f"img{i}.jpg", i)
    assert class_names(root) == ["apple", "mango", "zebra"]
    training = scan_split(root, "training")
    assert len(training) == 9
    assert [s.path for s in training] == sorted(s.path for s in training)
    assert all(s.label == ["apple", "mango", "zebra"].index(s.path.parent.name) for s in training)
    assert [s.label for s in scan_split(root, "validation")] == [0, 1, 2]


def test_missing_root(tmp_path: Path) -> None:
    _assert_error(str(tmp_path / "nope"), tmp_path / "nope")


def test_missing_split_folder(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 1}, {}, n_eval=0)
    _assert_error(str(root / "validation"), root, "validation")
    _assert_error(str(root / "evaluation"), root, "evaluation")


def test_evaluation_is_optional(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 2}, {0: 1}, n_eval=0)
    assert len(scan_split(root, "training")) == 2
    assert len(scan_split(root, "validation")) == 1
    assert class_names(root) == ["0"]


def test_split_without_images(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 1}, {}, n_eval=0)
    (root / "validation").mkdir()
    (root / "validation" / "readme.txt").write_text("x")
    _assert_error(str(root / "validation"), root, "validation")


def test_file_without_label_prefix(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 1}, {0: 1}, n_eval=0)
    write_jpeg(root / "training" / "pizza_3.jpg", 9)
    _assert_error(str(root / "training" / "pizza_3.jpg"), root)
    (root / "training" / "pizza_3.jpg").rename(root / "training" / "0007.jpg")
    _assert_error("0007.jpg", root)


def test_validation_label_unseen_in_training(tmp_path: Path) -> None:
    root = write_labeled_tree(tmp_path, {0: 1, 1: 1}, {0: 1, 5: 1}, n_eval=0)
    _assert_error("5_0.jpg", root, "validation")
    _assert_error(str(root / "validation"), root, "validation")


def test_validation_class_folder_unseen_in_training(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "training" / "cat" / "a.jpg", 1)
    write_jpeg(tmp_path / "validation" / "dog" / "a.jpg", 2)
    _assert_error(str(tmp_path / "validation" / "dog"), tmp_path, "validation")


def test_images_to_label_are_a_roots_evaluation_or_the_folder_itself(food: Path) -> None:
    evaluation = food / "evaluation"
    assert images_to_label(food) == images_to_label(evaluation)
    folder, images = images_to_label(evaluation)
    assert folder == evaluation and [p.name for p in images] == [
        "0000.jpg",
        "0001.jpg",
        "0002.jpg",
    ]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing", "folder does not exist"),
        ("a-file.jpg", "is a file, not a folder of images or a data folder"),
        ("empty", "holds no images (.jpeg, .jpg, .png), neither directly nor in evaluation/"),
    ],
)
def test_images_to_label_refuses_a_folder_without_images(
    tmp_path: Path, where: str, message: str
) -> None:
    (tmp_path / "a-file.jpg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as caught:
        images_to_label(tmp_path / where)
    assert str(caught.value) == f"{tmp_path / where}: {message}"
