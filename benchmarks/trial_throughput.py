"""One distillation epoch of the same ~60k-parameter student, three ways, side by side.

(a) sample: the course's pipeline -- PIL decode and torchvision transforms every epoch in a
    DataLoader, the ResNet18 teacher run online on every batch;
(b) sweep:  the decoded uint8 cache, batched augmentation on the device, cached soft labels;
(c) limit:  the student alone on tensors already in memory, no teacher, no augmentation.

Generated JPEGs of food-11's size (about 512 x 384) and count (9,993; ``--images`` scales it
down). One-off costs of (b), decoding the cache and labelling the views, are printed apart:
a study pays them once, every trial after that pays only the epoch. The last line reads
``sweep/sample=<b/a> sweep/limit=<b/c>`` for the largest size.

    python benchmarks/trial_throughput.py --images 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from sweep.config import DatasetConfig, KDConfig, TrainConfig
from sweep.data import build_data
from sweep.data.batches import build_cached_data
from sweep.data.decoded import decoded_split
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.models.weights import save_state_dict
from sweep.teacher.network import build_teacher
from sweep.teacher.soft_labels import soft_labels
from sweep.train import resolve_device, train

CLASSES = 11
STUDENT = {"stem": 32, "widths": [64, 128, 320]}  # ~59k parameters at 11 classes


def write_jpegs(root: Path, count: int, split: str, seed: int) -> None:
    """Smooth random images of food-11's typical size, as JPEGs of realistic file size."""
    rng = np.random.default_rng(seed)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        width, height = int(rng.integers(384, 640)), int(rng.integers(288, 512))
        coarse = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(folder / f"{i % CLASSES}_{i}.jpg", quality=90)


def warm_up(size: int, batch_size: int, device: torch.device, *models: torch.nn.Module) -> None:
    """A few passes first: the first ones through a model pay oneDNN/cuDNN set-up, which
    a real epoch amortises and a short benchmark epoch would not."""
    images = torch.randn(batch_size, 3, size, size, device=device)
    for model in models:
        model.to(device).train()
        for _ in range(2):
            model(images).sum().backward()
        model.zero_grad(set_to_none=True)


def epoch_rate(
    model: torch.nn.Module,
    data: object,
    count: int,
    cfg: TrainConfig,
    kd: KDConfig | None,
    teacher: torch.nn.Module | None,
) -> float:
    """Images per second of one training epoch (validation is a single small batch)."""
    warm_up(
        data.image_size,
        cfg.batch_size,
        resolve_device(cfg.device),
        *[m for m in (model, teacher) if m is not None],
    )
    result = train(model, data, cfg, kd=kd, teacher=teacher)
    seconds = result.history[0]["epoch_seconds"]
    return count / seconds


class InMemory:
    """Pre-made normalised batches: the compute limit has no data pipeline at all."""

    def __init__(self, count: int, size: int, batch_size: int, device: torch.device) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            (
                torch.randn(min(batch_size, count - s), 3, size, size, generator=generator).to(
                    device
                ),
                torch.randint(0, CLASSES, (min(batch_size, count - s),)).to(device),
            )
            for s in range(0, count, batch_size)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9993)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for (a)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, {torch.get_num_threads()} threads, {args.images} images")

    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "food", Path(tmp) / "home"
        start = time.perf_counter()
        write_jpegs(root, args.images, "training", 0)
        write_jpegs(root, args.batch_size, "validation", 1)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - start:.0f} s")
        teacher = build_teacher(CLASSES).eval()
        teacher_file = save_state_dict(teacher.state_dict(), Path(tmp) / "teacher.ckpt")
        kd = KDConfig(alpha=0.5, temperature_start=4.0, views=1)
        cfg = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            lr=1e-3,
            device=str(device),
            num_workers=args.workers,
            lr_schedule="constant",
        )
        rates: dict[int, tuple[float, float, float]] = {}
        for size in args.sizes:
            data_cfg = DatasetConfig(
                name="food11",
                root=str(root),
                image_size=size,
                resize=round(size * 256 / 224),
                train_crop="center",
                hflip=True,
            )
            student = create_student("dsconv", CLASSES, STUDENT)
            print(f"\n{size} px, student {count_params(student):,} parameters")

            sample = build_data(
                data_cfg,
                args.batch_size,
                home=home,
                num_workers=args.workers,
                pin_memory=device.type == "cuda",
            )
            a = epoch_rate(student, sample, args.images, cfg, kd, teacher)

            start = time.perf_counter()
            split = decoded_split(
                root, "training", data_cfg.resize, home / "cache", progress=False
            )
            decode_s = time.perf_counter() - start
            cached_cfg = replace(data_cfg, train_crop="random_resized")
            start = time.perf_counter()
            soft = soft_labels(
                teacher,
                teacher_file,
                split,
                cached_cfg,
                views=1,
                seed=0,
                cache_dir=home / "cache",
                device=device,
                progress=False,
            )
            label_s = time.perf_counter() - start
            cached = build_cached_data(
                cached_cfg,
                root,
                home / "cache",
                args.batch_size,
                device,
                0,
                1,
                soft,
                progress=False,
            )
            student = create_student("dsconv", CLASSES, STUDENT)
            b = epoch_rate(student, cached, args.images, cfg, kd, None)

            limit = SimpleNamespace(
                train=InMemory(args.images, size, args.batch_size, device),
                val=InMemory(args.batch_size, size, args.batch_size, device),
                image_size=size,
            )
            student = create_student("dsconv", CLASSES, STUDENT)
            c = epoch_rate(student, limit, args.images, cfg, None, None)
            rates[size] = (a, b, c)
            print(
                f"  one-off for (b): decode cache {decode_s:.1f} s, "
                f"teacher soft labels (1 view) {label_s:.1f} s"
            )
            print(f"  (a) sample pipeline  {a:8.1f} images/s")
            print(f"  (b) sweep cached     {b:8.1f} images/s")
            print(f"  (c) student only     {c:8.1f} images/s")
            # No pipeline can beat the student's own compute: c/a bounds what b/a can reach.
            print(f"  bound: limit/sample={c / a:.2f}")
            print(f"  {size}px sweep/sample={b / a:.2f} sweep/limit={b / c:.2f}")
    a, b, c = rates[max(rates)]
    print(f"sweep/sample={b / a:.2f} sweep/limit={b / c:.2f}")


if __name__ == "__main__":
    main()
