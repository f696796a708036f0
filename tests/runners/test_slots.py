"""Placing a pool's workers: GPUs, several workers per GPU, the CPU cores shared out."""

from __future__ import annotations

import pytest

from runners.slots import PoolOptions, parse_gpus, plan_slots, slot_env
from sweep.errors import SweepError


def test_workers_per_gpu_on_every_gpu() -> None:
    slots = plan_slots(PoolOptions(gpus=("all",), workers_per_gpu=4), gpu_count=2, cpu_count=16)
    assert [s.gpu for s in slots] == ["0"] * 4 + ["1"] * 4
    assert {s.threads for s in slots} == {2}
    chosen = plan_slots(PoolOptions(gpus=("1",), workers_per_gpu=2), gpu_count=2, cpu_count=4)
    assert [s.gpu for s in chosen] == ["1", "1"]


def test_workers_are_spread_over_gpus_or_share_the_cpu() -> None:
    assert [s.gpu for s in plan_slots(PoolOptions(workers=3), 2, 8)] == ["0", "1", "0"]
    cpu = plan_slots(PoolOptions(workers=2), gpu_count=0, cpu_count=8)
    assert [(s.gpu, s.threads) for s in cpu] == [(None, 4), (None, 4)]
    crowded = plan_slots(PoolOptions(workers=4), gpu_count=0, cpu_count=2)
    assert [s.threads for s in crowded] == [1, 1, 1, 1]  # never zero threads


def test_missing_gpus_are_errors_naming_the_flag() -> None:
    with pytest.raises(SweepError, match="--gpus: GPU 3 is not visible here"):
        plan_slots(PoolOptions(gpus=("3",)), gpu_count=2, cpu_count=4)
    with pytest.raises(SweepError, match="--gpus: no GPU is visible"):
        plan_slots(PoolOptions(gpus=("all",)), gpu_count=0, cpu_count=4)
    with pytest.raises(SweepError, match="--gpus: 'x'"):
        parse_gpus("x")
    assert parse_gpus("all") == ("all",) and parse_gpus("0, 1") == ("0", "1")


def test_slot_env_pins_one_device_and_the_thread_share() -> None:
    slot = plan_slots(PoolOptions(workers=2), gpu_count=2, cpu_count=8)[1]
    env = slot_env(slot, {"CUDA_VISIBLE_DEVICES": "2,3", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "3"  # index 1 of what this process sees
    assert env["OMP_NUM_THREADS"] == env["SWEEP_TORCH_THREADS"] == "4"
    assert env["PATH"] == "/bin"
    assert slot_env(slot, {})["CUDA_VISIBLE_DEVICES"] == "1"


def test_only_more_than_one_worker_or_gpus_make_a_pool() -> None:
    assert not PoolOptions().pooled
    assert PoolOptions(workers=2).pooled and PoolOptions(gpus=("0",)).pooled
