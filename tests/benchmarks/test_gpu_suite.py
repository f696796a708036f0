"""benchmarks/gpu_suite.py's CPU path: the same code a GPU runs, at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).parents[2] / "benchmarks" / "gpu_suite.py"


def test_the_gpu_suite_runs_on_the_cpu_and_prints_every_figure_with_its_ratio(
    tmp_path: Path,
) -> None:
    figures = tmp_path / "figures.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(SUITE), "--tiny", "--json", str(figures)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "device cpu" in out
    measured = json.loads(figures.read_text())
    assert set(measured["rates"]) == {"fp32", "bf16+channels_last", "student only (limit)"}
    assert all(rate > 0 for rate in measured["rates"].values())
    assert 50_000 < measured["params"] <= 60_000  # a ~60k student, within the budget
    assert set(measured["memory"]) == {"fp32", "bf16+channels_last"}
    assert set(measured["trials_per_hour"]) == {"1", "2"}
    assert all(rate > 0 for rate in measured["trials_per_hour"].values())
    for line in (
        "ratio bf16+channels_last/fp32 = ",
        "ratio fastest/student-only limit = ",
        "ratio trials/h 2 workers/1 = ",
        "1 worker on the CPU:",
    ):
        assert line in out
