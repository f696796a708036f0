"""One command for a GPU: a ~60k student's training speed, memory and trials per hour.

On generated food-11-shaped data (JPEGs of food-11's size, 11 classes) at 224 px with the
teacher's soft labels cached, it prints:

1. images/s of a training epoch: fp32; bf16 autocast + channels_last (``train.amp``, what
   sweep does on CUDA); and that plus ``torch.compile`` (``train.compile``), each after a
   warm-up epoch so compilation and cuDNN set-up stay out;
2. peak GPU memory of one trial (``torch.cuda.max_memory_allocated``);
3. the student-only limit: the same student on batches already on the device, no data
   pipeline and no teacher, which no data path can beat;
4. trials per hour of the real CLI with 1, 2, 4 and 8 workers sharing GPU 0
   (``sweep run --gpus 0 --workers-per-gpu K``), at the steady rate between trials;

and a ratio line for each. Sized to finish in under 5 minutes on one H100/H200.

On a machine without a GPU it runs the same code on the CPU (``--tiny``: 32 px, a few dozen
images, 1 and 2 workers, no compile), which ``tests/test_gpu_suite.py`` covers; its figures
say nothing about a GPU.

    python benchmarks/gpu_suite.py            # on a GPU
    python benchmarks/gpu_suite.py --tiny     # anywhere, in about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import optuna
import torch
import yaml
from optuna.trial import TrialState

from sweep.config import DatasetConfig, KDConfig, TrainConfig
from sweep.data.batches import build_cached_data
from sweep.data.decoded import decoded_split
from sweep.models.budget import count_params
from sweep.models.registry import create_student
from sweep.models.weights import save_state_dict
from sweep.search.storage import open_storage
from sweep.teacher.network import build_teacher
from sweep.teacher.soft_labels import soft_labels
from sweep.train import resolve_device, train

sys.path.insert(0, str(Path(__file__).parent))
from trial_throughput import CLASSES, STUDENT, InMemory, write_jpegs  # noqa: E402


def epoch_rate(
    model: torch.nn.Module, data: object, count: int, cfg: TrainConfig, kd: KDConfig | None
) -> tuple[float, float]:
    """Images/s of the second of two epochs (the first warms up), and peak memory in MiB."""
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = train(model, data, replace(cfg, epochs=2), kd=kd)
    seconds = result.history[1]["epoch_seconds"]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # the process's peak resident memory: an upper bound, not the trial's own
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return count / seconds, peak


def throughput(args: argparse.Namespace, root: Path, home: Path, device: torch.device) -> dict:
    """Epoch speed three ways, the student-only limit, and peak memory."""
    teacher = build_teacher(CLASSES).eval()
    teacher_file = save_state_dict(teacher.state_dict(), home / "teacher.ckpt")
    data_cfg = DatasetConfig(
        name="food11",
        root=str(root),
        image_size=args.size,
        resize=round(args.size * 256 / 224),
        train_crop="random_resized",
    )
    kd = KDConfig(alpha=0.5, temperature_start=4.0, views=1)
    split = decoded_split(root, "training", data_cfg.resize, home / "cache", progress=False)
    soft = soft_labels(
        teacher,
        teacher_file,
        split,
        data_cfg,
        views=1,
        seed=0,
        cache_dir=home / "cache",
        device=device,
        progress=False,
    )
    cached = build_cached_data(
        data_cfg, root, home / "cache", args.batch_size, device, 0, 1, soft, progress=False
    )
    base = TrainConfig(
        batch_size=args.batch_size, lr=1e-3, device=str(device), lr_schedule="constant"
    )
    variants = {"fp32": replace(base, amp=False), "bf16+channels_last": replace(base, amp=True)}
    if args.compile:
        variants["bf16+channels_last+compile"] = replace(base, amp=True, compile=True)
    rates: dict[str, float] = {}
    memory: dict[str, float] = {}
    for name, cfg in variants.items():
        torch.manual_seed(0)
        student = create_student("dsconv", CLASSES, STUDENT)
        try:
            rates[name], memory[name] = epoch_rate(student, cached, args.images, cfg, kd)
        except Exception as exc:  # noqa: BLE001 - say why (no compiler, ...) and go on
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    limit = SimpleNamespace(
        train=InMemory(args.images, args.size, args.batch_size, device),
        val=InMemory(args.batch_size, args.size, args.batch_size, device),
        image_size=args.size,
    )
    torch.manual_seed(0)
    student = create_student("dsconv", CLASSES, STUDENT)
    best_cfg = variants["bf16+channels_last"]
    rates["student only (limit)"], _ = epoch_rate(student, limit, args.images, best_cfg, None)
    return {"rates": rates, "memory": memory, "params": count_params(student)}


def space(root: Path, size: int, epochs: int, batch_size: int) -> dict:
    """Every trial trains the same student, so trials per hour compare like with like."""
    return {
        "study": "gpu",
        "dataset": {
            "name": "food11",
            "root": str(root),
            "image_size": size,
            "resize": round(size * 256 / 224),
        },
        "teacher": {"epochs": 1, "batch_size": batch_size},
        "sampler": {"name": "random", "seed": 0},
        "early_stopping": "none",
        "fixed": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": 0.003,
            "kd.views": 1,
            "student.family": "dsconv",
            **{f"student.{k}": v for k, v in STUDENT.items()},
            "kd.alpha": 0.5,
        },
        "params": {"kd.temperature_start": {"type": "float", "low": 2.0, "high": 6.0}},
    }


def trials_per_hour(args: argparse.Namespace, root: Path, home: Path, cuda: bool) -> dict:
    """Steady trials per hour of ``sweep run`` with K workers on GPU 0 (or the CPU)."""
    env = {**os.environ, "SWEEP_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    rates: dict[int, float] = {}
    for workers in args.workers:
        study = f"gpu-w{workers}"
        path = home / f"{study}.yaml"
        document = space(root, args.size, args.trial_epochs, args.batch_size)
        path.write_text(yaml.safe_dump({**document, "study": study}))
        trials = max(3, args.trials_per_worker * workers)
        pool = (
            ["--gpus", "0", "--workers-per-gpu", str(workers)]
            if cuda
            else ["--workers", str(workers)]
        )
        command = [
            sys.executable,
            "-m",
            "sweep.cli",
            "run",
            "--space",
            str(path),
            "--trials",
            str(trials),
            "--no-progress",
            *pool,
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        storage = open_storage(str(home / "optuna.journal"))
        ended = sorted(
            t.datetime_complete
            for t in optuna.load_study(study_name=study, storage=storage).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,)
            )
        )
        span = (ended[-1] - ended[0]).total_seconds()
        rates[workers] = (len(ended) - 1) / span * 3600 if span > 0 else float("nan")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a CPU-sized run (32 px, 48 images)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--trial-epochs", type=int, default=2)
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.tiny:
        args.images, args.size, args.batch_size, args.workers = 48, 32, 16, "1,2"
        args.trial_epochs, args.trials_per_worker = 1, 2
    args.workers = [int(w) for w in args.workers.split(",")]
    args.compile = cuda  # on the CPU, inductor's C++ build takes minutes and says nothing
    name = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}; {args.images} images at {args.size} px, batch {args.batch_size}")

    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "food11", Path(tmp) / "home"
        home.mkdir()
        write_jpegs(root, args.images, "training", 0)
        write_jpegs(root, max(args.batch_size, 44), "validation", 1)
        measured = throughput(args, root, home, device)
        per_hour = trials_per_hour(args, root, home, cuda)

    rates, memory = measured["rates"], measured["memory"]
    print(f"student dsconv {measured['params']:,} parameters, cached soft labels (1 view)")
    if not cuda:
        print("  (on the CPU sweep trains in float32, contiguous: bf16 and channels_last are off)")
    for variant, rate in rates.items():
        peak = (
            f", peak {'GPU ' if cuda else 'process '}memory {memory[variant]:,.0f} MiB"
            if (variant in memory)
            else ""
        )
        print(f"  {variant:<28} {rate:10.1f} images/s{peak}")
    fp32 = rates["fp32"]
    for variant, rate in rates.items():
        if variant != "fp32":
            print(f"ratio {variant}/fp32 = {rate / fp32:.2f}")
    fastest = max((r for v, r in rates.items() if v != "student only (limit)"))
    print(f"ratio fastest/student-only limit = {fastest / rates['student only (limit)']:.2f}")
    where = "on GPU 0" if cuda else "on the CPU"
    for workers, rate in per_hour.items():
        print(f"  {workers} worker{'s' if workers > 1 else ''} {where}: {rate:8.0f} trials/h")
    one = per_hour[args.workers[0]]
    for workers, rate in per_hour.items():
        if workers != args.workers[0]:
            print(f"ratio trials/h {workers} workers/{args.workers[0]} = {rate / one:.2f}")
    print(f"total {time.monotonic() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"device": name, **measured, "trials_per_hour": per_hour}))


if __name__ == "__main__":
    main()
