"""The bundled demo data set: contents, idempotence, crash safety, foreign folders."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sweep.data.demo as demo_module
from sweep.data import (
    class_names,
    ensure_demo_dataset,
    scan_split,
)
from sweep.errors import DataError


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
