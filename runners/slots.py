"""Which device each worker of a pool gets, and the environment that pins it there.

A 60k-parameter student leaves most of a GPU idle, so a pool runs several workers per GPU,
each seeing exactly one device through ``CUDA_VISIBLE_DEVICES`` (it calls it ``cuda:0``).
On a machine without a GPU the workers split the CPU cores instead: each gets
``cores // workers`` threads, since N processes each using every core would thrash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sweep.errors import SweepError

THREADS_ENV = "SWEEP_TORCH_THREADS"


@dataclass(frozen=True)
class PoolOptions:
    """How many worker processes ``sweep run`` starts, and where.

    Attributes:
        workers: processes in all (``--workers``); spread over the GPUs when there are any.
        gpus: ``("all",)`` or GPU indices (``--gpus``); None when not given.
        workers_per_gpu: processes per GPU when ``gpus`` is given (``--workers-per-gpu``).
        max_retries: how often a trial whose worker died is tried again (``--max-retries``).
    """

    workers: int = 1
    gpus: tuple[str, ...] | None = None
    workers_per_gpu: int = 1
    max_retries: int = 1

    @property
    def pooled(self) -> bool:
        """Whether trials run in worker processes (else in the ``sweep run`` process)."""
        return self.workers > 1 or self.gpus is not None


@dataclass(frozen=True)
class Slot:
    """One worker's place in the pool: its device and its share of the CPU."""

    index: int
    gpu: str | None
    threads: int

    @property
    def label(self) -> str:
        """How the progress display names the slot."""
        return f"worker {self.index}" + (f" (GPU {self.gpu})" if self.gpu is not None else "")


def parse_gpus(text: str) -> tuple[str, ...]:
    """Read ``--gpus``: ``all`` or comma-separated indices such as ``0,1``.

    Raises:
        SweepError: the text is neither.
    """
    if text.strip() == "all":
        return ("all",)
    ids = tuple(part.strip() for part in text.split(","))
    if not ids or not all(part.isdigit() for part in ids):
        raise SweepError(f"--gpus: {text!r}: expected 'all' or indices such as 0,1")
    return ids


def plan_slots(options: PoolOptions, gpu_count: int, cpu_count: int) -> list[Slot]:
    """Give every worker a device and a thread count.

    Args:
        options: the pool's size and devices.
        gpu_count: GPUs this process sees.
        cpu_count: cores this process may use.

    Returns:
        One slot per worker.

    Raises:
        SweepError: ``--gpus`` names a GPU that is not there.
    """
    devices: list[str | None]
    if options.gpus is not None:
        if gpu_count == 0:
            raise SweepError("--gpus: no GPU is visible here; use --workers N on the CPU")
        if options.gpus == ("all",):
            ids = [str(i) for i in range(gpu_count)]
        else:
            missing = [g for g in options.gpus if int(g) >= gpu_count]
            if missing:
                raise SweepError(
                    f"--gpus: GPU {missing[0]} is not visible here ({gpu_count} visible: "
                    f"0-{gpu_count - 1})"
                )
            ids = list(dict.fromkeys(options.gpus))
        devices = [gpu for gpu in ids for _ in range(options.workers_per_gpu)]
    elif gpu_count > 0:
        devices = [str(i % gpu_count) for i in range(options.workers)]
    else:
        devices = [None] * options.workers
    threads = max(1, cpu_count // len(devices))
    return [Slot(index, gpu, threads) for index, gpu in enumerate(devices)]


def slot_env(slot: Slot, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the worker in ``slot``: its GPU and its thread count.

    GPU indices count the GPUs this process sees, so an already restricted
    ``CUDA_VISIBLE_DEVICES`` (``2,3``) maps index 0 to GPU 2.
    """
    env = dict(base)
    if slot.gpu is not None:
        visible = [v.strip() for v in base.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]
        env["CUDA_VISIBLE_DEVICES"] = visible[int(slot.gpu)] if visible else slot.gpu
    threads = str(slot.threads)
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, THREADS_ENV: threads})
    return env


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
