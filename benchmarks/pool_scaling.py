"""Trials per hour with 1, 2 and 4 workers, and what storage and tracking cost each trial.

Every configuration runs the real CLI (``sweep run --trials N --workers K``) on the bundled
demo data with one fixed student, so all trials do the same work; each gets its own study
in one SWEEP_HOME, after a warm-up run that trains the teacher and builds the caches.
From what the study and MLflow recorded:

- throughput: trials per hour at the steady rate, (trials - 1) / (last trial's end - first
  trial's end) x 3600, so process start-up and each process's first-trial warm-up (data
  paged in, kernels set up) stay out; the command's whole wall time is shown apart;
- overhead inside a trial: its wall time in Optuna minus the ``train_seconds`` it logged
  to MLflow (sampling, the budget check, journal and MLflow writes, the checkpoint upload);
- the gap between trials: a worker slot's time per trial (span x workers / trials) minus
  a trial's wall time (counting, waiting for the lock; in ``sweep run``'s own process also
  the front's refresh after every trial).

Their sum is the fixed cost per trial. The target is under 5% of a 60 s trial; trials here
are shorter, so the share at 60 s is extrapolated (fixed seconds / 60 s), and said so.

With a GPU, K = 1, 2, 4, 8 workers share GPU 0 (``--gpus 0 --workers-per-gpu K``).

    python benchmarks/pool_scaling.py [--trials 8] [--epochs 2] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from sweep.search.storage import open_storage

TARGET_TRIAL_SECONDS = 60.0


def space(study: str, epochs: int) -> dict:
    """A demo study with nothing left to search: every trial trains the same student."""
    return {
        "study": study,
        "dataset": {"name": "demo", "image_size": 32, "resize": 32, "hflip": False},
        "teacher": {"epochs": 2, "lr": 0.002},
        "sampler": {"name": "random", "seed": 0},
        "early_stopping": "none",
        "fixed": {
            "epochs": epochs,
            "lr": 0.003,
            "student.family": "dsconv",
            "student.stem": 16,
            "student.widths": [32, 64, 128],
            "kd.alpha": 0.5,
        },
        "params": {"kd.temperature_start": {"type": "float", "low": 2.0, "high": 6.0}},
    }


@dataclass(frozen=True)
class Measured:
    """One configuration's numbers (medians over its trials)."""

    label: str
    workers: int
    trials: int
    command_seconds: float
    span_seconds: float
    trial_seconds: float
    train_seconds: float

    @property
    def per_hour(self) -> float:
        return (self.trials - 1) / self.span_seconds * 3600

    @property
    def overhead(self) -> float:
        return self.trial_seconds - self.train_seconds

    @property
    def gap(self) -> float:
        return max(0.0, self.workers * self.span_seconds / (self.trials - 1) - self.trial_seconds)

    @property
    def share_at_target(self) -> float:
        return (self.overhead + self.gap) / TARGET_TRIAL_SECONDS


def run(home: Path, folder: Path, study: str, trials: int, epochs: int, flags: list[str]) -> float:
    """Run one ``sweep run`` to the end; returns its wall time."""
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(space(study, epochs)))
    env = {**os.environ, "SWEEP_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "sweep.cli", "run", "--space", str(path)]
    command += ["--trials", str(trials), "--no-progress", *flags]
    began = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - began


def measure(home: Path, study: str, label: str, workers: int, seconds: float) -> Measured:
    """Read back what the study and its MLflow runs recorded."""
    storage = open_storage(str(home / "optuna.journal"))
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,)
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    walls, trains = [], []
    for trial in trials:
        walls.append((trial.datetime_complete - trial.datetime_start).total_seconds())
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        trains.append(run.data.metrics["train_seconds"])
    ends = sorted(t.datetime_complete for t in trials)
    return Measured(
        label,
        workers,
        len(trials),
        seconds,
        (ends[-1] - ends[0]).total_seconds(),
        statistics.median(walls),
        statistics.median(trains),
    )


def report(rows: list[Measured]) -> None:
    """Print the table, the speed-ups and the extrapolated overhead."""
    print(
        f"{'config':<15} {'trials':>6} {'command s':>9} {'trials/h':>8} {'x vs 1':>6} "
        f"{'trial s':>7} {'train s':>7} {'in-trial s':>10} {'gap s':>6} {'at 60 s':>7}"
    )
    base = rows[0].per_hour
    for r in rows:
        print(
            f"{r.label:<15} {r.trials:>6} {r.command_seconds:>9.1f} {r.per_hour:>8.0f} "
            f"{r.per_hour / base:>6.2f} {r.trial_seconds:>7.2f} {r.train_seconds:>7.2f} "
            f"{r.overhead:>10.2f} {r.gap:>6.2f} {r.share_at_target:>7.1%}"
        )
    print(
        "\nin-trial = trial wall time - train_seconds; gap = time per trial per worker slot "
        "outside the trial.\n'at 60 s' extrapolates: (in-trial + gap) seconds / 60 s "
        f"(target < 5%); worst here {max(r.share_at_target for r in rows):.1%}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="finished trials per config")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--workers", default="1,2,4", help="CPU worker counts")
    parser.add_argument("--gpu-workers", default="1,2,4,8", help="workers on GPU 0")
    parser.add_argument("--home", type=Path, help="SWEEP_HOME to use (default: a temp dir)")
    args = parser.parse_args()
    import torch

    home = args.home or Path(tempfile.mkdtemp(prefix="pool-scaling-"))
    folder = home / "spaces"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"SWEEP_HOME {home}; {os.cpu_count()} cores; CUDA: {torch.cuda.is_available()}")
    stamp = time.strftime("%H%M%S")
    # Teacher, decoded cache and soft labels once, so every configuration pays only trials.
    run(home, folder, f"warmup-{stamp}", 1, args.epochs, [])
    configs: list[tuple[str, int, list[str]]] = []
    for k in (int(w) for w in args.workers.split(",")):
        # One worker runs in the `sweep run` process itself: the path most users take.
        configs.append((f"cpu {k} worker" + ("s" if k > 1 else ""), k, ["--workers", str(k)]))
    if torch.cuda.is_available():
        for k in (int(w) for w in args.gpu_workers.split(",")):
            configs.append((f"gpu0 x{k}", k, ["--gpus", "0", "--workers-per-gpu", str(k)]))
    rows = []
    for label, workers, flags in configs:
        study = f"scale-{stamp}-{label.replace(' ', '-')}"
        seconds = run(home, folder, study, args.trials, args.epochs, flags)
        rows.append(measure(home, study, label, workers, seconds))
        print(f"  {label}: {rows[-1].per_hour:.0f} trials/h", flush=True)
    print()
    report(rows)


if __name__ == "__main__":
    main()
