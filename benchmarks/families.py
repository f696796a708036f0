"""Can each student family beat the first thing a person would write? All side by side.

Every registered family, at its default widths, is trained next to a hand-made plain CNN of
about the same size (four 3x3 conv-BN-ReLU layers, the first two at full resolution, then
max-pools; 54,814 parameters at 10 classes), for the same epochs, on the same images, with
the same optimiser and seed, without distillation:

- the bundled demo data (scikit-learn's digits, 10 classes, 32 px);
- generated 32-px images: 10 classes of oriented gratings under random phase, frequency,
  colour and noise (spatial structure, no single-pixel shortcut).

At 32 px the families use their small-input options (stride-1 stem, early stages at full
resolution), as a space for small images would set them. The table also lists each
family's parameters, multiply-adds at 224 and 32 px (224 with the default 224-px strides)
and training throughput on this machine at both sizes, then each family's accuracy minus
the plain CNN's: a family that cannot beat it shows a negative number at once.

    python benchmarks/families.py --epochs 5
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sweep.config import DatasetConfig, TrainConfig
from sweep.data import build_data, ensure_demo_dataset
from sweep.models.budget import count_macs, count_params
from sweep.models.families import SMALL_INPUT_OPTIONS
from sweep.models.registry import create_student, student_families
from sweep.train import train

HAND_MADE = "hand-made CNN"


def hand_made_cnn(num_classes: int) -> nn.Module:
    """Four 3x3 conv-BN-ReLU layers (20, 36, 52, 64), full resolution for the first two."""

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *conv(3, 20),
        *conv(20, 36),
        nn.MaxPool2d(2),
        *conv(36, 52),
        nn.MaxPool2d(2),
        *conv(52, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def build(name: str, num_classes: int, small_input: bool) -> nn.Module:
    if name == HAND_MADE:
        return hand_made_cnn(num_classes)
    return create_student(name, num_classes, SMALL_INPUT_OPTIONS[name] if small_input else {})


def demo_tensors(home: Path) -> tuple[TensorDataset, TensorDataset]:
    """The demo's training and validation splits, decoded once into memory (no augmentation)."""
    root = ensure_demo_dataset(home / "demo")
    cfg = DatasetConfig(
        name="food11", root=str(root), image_size=32, resize=32, train_crop="center", hflip=False
    )
    bundle = build_data(cfg, 256, home=home)

    def gather(loader: DataLoader) -> TensorDataset:
        images, labels = zip(*((x, y) for x, y in loader), strict=True)
        return TensorDataset(torch.cat(images), torch.cat(labels))

    return gather(bundle.train), gather(bundle.val)


def grating_tensors(per_class: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """10 classes of gratings at orientations 18 degrees apart, 32 px, jittered and noisy."""
    rng = np.random.default_rng(seed)
    n = per_class * 10
    labels = np.repeat(np.arange(10), per_class)
    angle = labels * math.pi / 10 + rng.normal(0, 0.05, n)
    freq = rng.uniform(0.25, 0.6, n)
    phase = rng.uniform(0, 2 * math.pi, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    wave = np.sin(
        freq[:, None, None]
        * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
        + phase[:, None, None]
    )
    colour = rng.uniform(0.3, 1.0, (n, 3, 1, 1))
    images = wave[:, None] * colour + rng.normal(0, 0.6, (n, 3, 32, 32))
    images = torch.tensor(images, dtype=torch.float32)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    images, targets = images[order], torch.tensor(labels)[order]
    cut = int(n * 0.8)
    return TensorDataset(images[:cut], targets[:cut]), TensorDataset(images[cut:], targets[cut:])


def accuracy(name: str, data: tuple[TensorDataset, TensorDataset], epochs: int) -> float:
    train_set, val_set = data
    loaders = types.SimpleNamespace(
        train=DataLoader(
            train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
        ),
        val=DataLoader(val_set, batch_size=256),
    )
    torch.manual_seed(0)
    model = build(name, 10, small_input=True)
    cfg = TrainConfig(epochs=epochs, lr=3e-3, lr_schedule="onecycle", device="cpu", seed=0)
    return train(model, loaders, cfg).val_acc


def throughput(name: str, image_size: int, batch: int, steps: int) -> float:
    """Training images per second (forward, backward, step) on random images."""
    model = build(name, 11, small_input=image_size <= 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.rand(batch, 3, image_size, image_size), torch.randint(0, 11, (batch,))
    for step in range(steps + 1):  # the first step warms up, uncounted
        if step == 1:
            start = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=150, help="generated images per class")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per size")
    parser.add_argument(
        "--families", nargs="*", default=None, help="only these (the hand-made CNN always runs)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = [*(args.families or student_families()), HAND_MADE]
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_tensors(Path(tmp))
    gratings = grating_tensors(args.per_class)
    rows = []
    for name in names:
        default = build(name, 11, small_input=False)
        small = build(name, 11, small_input=True)
        row = {
            "name": name,
            "params": count_params(build(name, 10, small_input=True)),
            "macs224": count_macs(default, 224),
            "macs32": count_macs(small, 32),
            "ips224": throughput(name, 224, 16, args.steps),
            "ips32": throughput(name, 32, 64, args.steps),
            "demo": accuracy(name, demo, args.epochs),
            "gratings": accuracy(name, gratings, args.epochs),
        }
        rows.append(row)
        print(f"{name}: done", flush=True)
    print(f"\n{args.epochs} epochs, no distillation, seed 0; params at 10 classes\n")
    print(
        f"{'family':<18} {'params':>7} {'MMACs@224':>9} {'MMACs@32':>8} {'img/s@224':>9} "
        f"{'img/s@32':>8} {'demo':>6} {'gratings':>8}"
    )
    for r in rows:
        print(
            f"{r['name']:<18} {r['params']:>7,} {r['macs224'] / 1e6:>9.1f} "
            f"{r['macs32'] / 1e6:>8.1f} {r['ips224']:>9.1f} {r['ips32']:>8.1f} "
            f"{r['demo']:>6.4f} {r['gratings']:>8.4f}"
        )
    base = rows[-1]
    print(f"\naccuracy minus the {HAND_MADE}'s (negative: the family loses to it)")
    for r in rows[:-1]:
        print(
            f"{r['name']:<18} demo {r['demo'] - base['demo']:+.4f}  "
            f"gratings {r['gratings'] - base['gratings']:+.4f}"
        )


if __name__ == "__main__":
    main()
