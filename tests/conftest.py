"""Shared fixtures: a small, learnable food-11 folder and an isolated SWEEP_HOME."""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from sweep.data import ensure_demo_dataset

# The settings every CLI test space shares: 16-px images, 1 epoch, a 1-epoch teacher.
TINY_DATASET = {
    "name": "food11",
    "image_size": 16,
    "resize": 16,
    "train_crop": "center",
    "hflip": False,
}
TINY_TEACHER = {"epochs": 1, "batch_size": 16}
TINY_FIXED = {"epochs": 1, "batch_size": 16, "student.stem": 8}

# Each class is a colour, plus noise: a student learns it in one epoch at 16 px.
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 220)]


def write_food11(
    root: Path, per_class: tuple[int, int] = (16, 8), n_eval: int = 6, size: int = 16
) -> Path:
    """Write a food-11 layout tree (``<label>_<index>.jpg``) of coloured noise images."""
    rng = np.random.default_rng(0)
    for split, count in zip(("training", "validation"), per_class, strict=True):
        (root / split).mkdir(parents=True, exist_ok=True)
        for label, colour in enumerate(CLASS_COLOURS):
            for i in range(count):
                noise = rng.integers(-40, 40, size=(size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"{label}_{i}.jpg", quality=95)
    (root / "evaluation").mkdir(parents=True, exist_ok=True)
    for i in range(n_eval):
        colour = CLASS_COLOURS[i % len(CLASS_COLOURS)]
        pixels = np.full((size, size, 3), colour, dtype=np.uint8)
        Image.fromarray(pixels).save(root / "evaluation" / f"{i:04d}.jpg", quality=95)
    return root


# The suite runs on two workers (pytest-xdist, ``--dist loadfile``: README's command), a
# module to a worker so its fixtures are built once. These modules start several processes
# of their own, or time how fast something stops: never two of them at once, so they never
# share the machine's two cores with each other.
SERIAL_MODULES = {
    "tests/test_interrupts.py",
    "tests/test_ui.py",
    "tests/runners/test_pool.py",
    "tests/runners/test_loop.py",
    "tests/runners/test_local.py",
    "tests/runners/test_finalize.py",
    "tests/benchmarks/test_gpu_suite.py",
}


@pytest.fixture(scope="module", autouse=True)
def one_process_heavy_module_at_a_time(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Hold the workers' shared lock while a module of :data:`SERIAL_MODULES` runs."""
    module = request.path.relative_to(request.config.rootpath).as_posix()
    if module not in SERIAL_MODULES or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # Each worker's base folder sits in the run's own folder: the lock is the run's.
    with FileLock(str(tmp_path_factory.getbasetemp().parent / "serial-modules.lock")):
        yield


@pytest.fixture(scope="session")
def food11_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class food-11 folder with 48 training and 24 validation images of 16 px."""
    return write_food11(tmp_path_factory.mktemp("food11"))


@pytest.fixture
def sweep_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SWEEP_HOME and no inherited MLflow URI, so tests touch nothing shared."""
    home = tmp_path / "home"
    monkeypatch.setenv("SWEEP_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: a second intra-op thread gains nothing and spin-waits when cores are busy.

    Measured on the 2-core CI machine under load: 80 s against 20 s for tests/test_prune.py.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_loaders(
    classes: int = 3, size: int = 16, n: int = 32, batch: int = 16
) -> types.SimpleNamespace:
    """``train`` and ``val`` loaders of random images whose label is the brightest channel."""
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, classes, (n,), generator=gen)
    images = torch.rand(n, 3, size, size, generator=gen)
    images[torch.arange(n), labels] += 0.5  # learnable from the mean colour
    dataset = TensorDataset(images, labels)
    return types.SimpleNamespace(
        train=DataLoader(dataset, batch_size=batch, shuffle=True),
        val=DataLoader(dataset, batch_size=batch),
    )


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> None:
    """Write a JPEG of random pixels (``mode`` RGB or L) at ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(path)


def write_labeled_tree(
    root: Path, train: dict[int, int], val: dict[int, int], n_eval: int = 3
) -> Path:
    """A food-11 tree of random JPEGs: ``{label: count}`` per labeled split, ``n_eval``
    unlabeled ones."""
    seed = 0
    for split, counts in (("training", train), ("validation", val)):
        for label, count in counts.items():
            for i in range(count):
                seed += 1
                write_jpeg(root / split / f"{label}_{i}.jpg", seed)
    for i in range(n_eval):
        seed += 1
        write_jpeg(root / "evaluation" / f"{i:04d}.jpg", seed)
    return root


@pytest.fixture
def food(tmp_path: Path) -> Path:
    """A food-11 tree of 12 training, 4 validation and 3 evaluation random JPEGs."""
    return write_labeled_tree(tmp_path / "food", {0: 4, 1: 3, 2: 5}, {0: 2, 2: 2})


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
