"""Search cheap, finish properly: a proxy study plus ``sweep finalize`` against a
single-stage study at full fidelity, for about the same training compute.

Both arms search the same space (a bundled one, the demo by default) with the real CLI in
one SWEEP_HOME (one teacher per image size, shared caches):

(a) single stage: ``sweep run --trials A`` at the full fidelity (the space's own epochs,
    image size and every training image). Its winner is what it would hand in; to know how
    good that architecture really is, it is trained again with S seeds (``sweep finalize
    --top 1``), which is measurement, not counted in the arm's compute.
(b) two stages: ``sweep run --trials B`` at a proxy fidelity (fewer epochs, smaller
    images, part of the training set), then ``sweep finalize --top K --seeds S`` at full.

Compute is counted from what the trials actually trained (early-stopped trials count the
epochs they ran; over-budget and duplicate proposals count nothing): the sum over trials
of training images x epochs x pixels per image. Printed: the Spearman rank correlation
between the proxy scores and the full-fidelity means of the K architectures finalized,
each arm's best mean over seeds, the compute of each, and the ratio (b)/(a).

    python benchmarks/fidelity.py [--full-trials 14] [--proxy-trials 24] [--top 6]
        [--seeds 2] [--space demo] [--data synthetic] [--proxy 0.5,0.5,0.5]

``--data synthetic`` runs on generated food-11-shaped data (11 classes, JPEGs named
``<label>_<index>.jpg``, textured so that size and capacity matter) at 64 px instead.
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

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from PIL import Image
from scipy.stats import spearmanr

from sweep.search.final import pair_of
from sweep.search.storage import open_storage


def sweep(home: Path, *args: str) -> tuple[str, float]:
    """Run the CLI to the end; returns its output and wall time."""
    env = {**os.environ, "SWEEP_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "sweep.cli", *args]
    began = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    seconds = time.monotonic() - began
    print(f"  sweep {' '.join(args[:3])}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return done.stdout, seconds


def synthetic_food11(root: Path, per_class: tuple[int, int], size: int) -> Path:
    """11 classes of textured JPEGs: class c is a grating of its own frequency and angle, in
    a random hue, jittered and under heavy noise, so colour says nothing and a student must
    see the texture (the digits and plain colours are learned perfectly by every student)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split, count in zip(("training", "validation"), per_class, strict=True):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for label in range(11):
            for i in range(count):
                angle = np.pi * (label % 6) / 6 + rng.normal(0, 0.12)
                frequency = (3 if label < 6 else 5) * rng.uniform(0.85, 1.15)
                along = xx * np.cos(angle) + yy * np.sin(angle)
                wave = np.sin(2 * np.pi * frequency * along + rng.uniform(0, 2 * np.pi))
                hue = rng.uniform(60, 200, 3)
                noise = rng.normal(0, 70, (size, size, 3))
                pixels = hue[None, None, :] + 45 * wave[..., None] + noise
                image = np.clip(pixels, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{label}_{i}.jpg", quality=90)
    (root / "evaluation").mkdir(exist_ok=True)
    return root


@dataclass(frozen=True)
class Arm:
    """What one arm trained and found."""

    name: str
    compute: float  # images x epochs x pixels, summed over what was trained
    trained: int  # trials that trained (search and final)
    seconds: float  # wall time of its commands
    best_mean: float  # its winner's mean validation accuracy over the seeds
    best_sd: float
    best_params: int


def trial_compute(trial: FrozenTrial, images: int, size: int, fraction: float) -> float:
    """Images x epochs x pixels a trial trained (epochs it reported; 0 if never trained)."""
    epochs = len(trial.intermediate_values)
    return images * fraction * epochs * size * size


def load(home: Path, name: str) -> optuna.Study:
    storage = open_storage(str(home / "optuna.journal"))
    return optuna.load_study(study_name=name, storage=storage)


def final_means(home: Path, study: str) -> dict[int, list[float]]:
    """Per finalized source trial, its seeds' validation accuracies."""
    scores: dict[int, list[float]] = {}
    for trial in load(home, f"{study}.final").get_trials(states=(TrialState.COMPLETE,)):
        scores.setdefault(pair_of(trial)[0], []).append(trial.user_attrs["val_acc"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="demo", help="a bundled space or a YAML file")
    parser.add_argument("--data", choices=["bundled", "synthetic"], default="bundled")
    parser.add_argument("--full-trials", type=int, default=14, help="arm (a)'s trials")
    parser.add_argument("--proxy-trials", type=int, default=24, help="arm (b)'s search trials")
    parser.add_argument("--top", type=int, default=6, help="arm (b) finalizes its top K")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per finalized architecture")
    parser.add_argument("--epochs", type=int, default=8, help="full fidelity's epochs")
    parser.add_argument("--size", type=int, default=64, help="synthetic: image size")
    parser.add_argument("--per-class", type=int, default=40, help="synthetic: training images")
    parser.add_argument(
        "--proxy",
        default="0.5,0.5,0.5",
        metavar="E,S,F",
        help="the proxy's epochs, image size and training share, as shares of full fidelity",
    )
    args = parser.parse_args()
    shares = [float(x) for x in args.proxy.split(",")]
    proxy = dict(zip(("epochs", "image_size", "train_fraction"), shares, strict=True))

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        sets = ["--set", f"fixed.epochs={args.epochs}"]
        size = 32
        if args.data == "synthetic":
            size = args.size
            resize = round(size * 9 / 8)
            root = synthetic_food11(Path(tmp) / "food11", (args.per_class, 16), resize)
            sets += ["--data-dir", str(root), "--set", "dataset.name=food11"]
            sets += ["--set", f"dataset.image_size={size}", "--set", f"dataset.resize={resize}"]
        proxy_size = max(8, int(size * proxy["image_size"]))
        proxy_epochs = max(1, round(args.epochs * proxy["epochs"]))
        fidelity = (
            f"fidelity={{search: {{epochs: {proxy_epochs}, image_size: {proxy_size}, "
            f"train_fraction: {proxy['train_fraction']}}}}}"
        )
        full_sets = [*sets, "--set", "study=full"]
        proxy_sets = [*sets, "--set", "study=proxy", "--set", fidelity]

        # (a) one stage at full fidelity; its winner measured over seeds (not counted).
        _, a_run = sweep(
            home,
            "run",
            "--space",
            args.space,
            "--trials",
            str(args.full_trials),
            "--no-progress",
            *full_sets,
        )
        sweep(
            home,
            "finalize",
            "--study",
            "full",
            "--top",
            "1",
            "--seeds",
            str(args.seeds),
            "--no-progress",
        )
        # (b) a proxy search, then its top K at full fidelity.
        _, b_run = sweep(
            home,
            "run",
            "--space",
            args.space,
            "--trials",
            str(args.proxy_trials),
            "--no-progress",
            *proxy_sets,
        )
        _, b_final = sweep(
            home,
            "finalize",
            "--study",
            "proxy",
            "--top",
            str(args.top),
            "--seeds",
            str(args.seeds),
            "--no-progress",
        )

        images = len(list((home / "data" / "demo" / "training").glob("*.jpg"))) or len(
            list((Path(tmp) / "food11" / "training").glob("*.jpg"))
        )
        full_trials = load(home, "full").trials
        a_compute = sum(trial_compute(t, images, size, 1.0) for t in full_trials)
        a_scores = final_means(home, "full")
        ((a_winner, a_seeds),) = a_scores.items()
        proxy_trials = load(home, "proxy").trials
        b_search = sum(
            trial_compute(t, images, proxy_size, proxy["train_fraction"]) for t in proxy_trials
        )
        finals = load(home, "proxy.final").trials
        b_finalize = sum(trial_compute(t, images, size, 1.0) for t in finals)
        b_scores = final_means(home, "proxy")
        proxy_score = {t.number: t.user_attrs.get("val_acc") for t in proxy_trials}
        by_mean = sorted(b_scores, key=lambda n: -statistics.fmean(b_scores[n]))
        b_winner = by_mean[0]
        rho, p_value = spearmanr(
            [proxy_score[n] for n in b_scores], [statistics.fmean(b_scores[n]) for n in b_scores]
        )

        per_training = {
            pair_of(t): trial_compute(t, images, size, 1.0) for t in finals if pair_of(t)
        }
        by_proxy = sorted(b_scores, key=lambda n: -(proxy_score[n] or 0.0))
        prefixes = []
        for k in range(1, len(by_proxy) + 1):
            chosen = set(by_proxy[:k])
            spent = b_search + sum(c for p, c in per_training.items() if p[0] in chosen)
            prefixes.append((spent, max(statistics.fmean(b_scores[n]) for n in chosen)))

        def arm(name, compute, trained, seconds, study, winner, seeds) -> Arm:
            params = next(t for t in load(home, study).trials if t.number == winner)
            return Arm(
                name,
                compute,
                trained,
                seconds,
                statistics.fmean(seeds),
                statistics.stdev(seeds) if len(seeds) > 1 else 0.0,
                params.user_attrs["params"],
            )

        trained = lambda trials: sum(bool(t.intermediate_values) for t in trials)  # noqa: E731
        arms = [
            arm(
                "(a) single stage",
                a_compute,
                trained(full_trials),
                a_run,
                "full",
                a_winner,
                a_seeds,
            ),
            arm(
                "(b) proxy + finalize",
                b_search + b_finalize,
                trained(proxy_trials) + trained(finals),
                b_run + b_final,
                "proxy",
                b_winner,
                b_scores[b_winner],
            ),
        ]

    unit = 1e6
    print(
        f"space {args.space}, data {args.data}: full fidelity {args.epochs} epochs at {size} px "
        f"on {images} training images; proxy {proxy_epochs} epochs at {proxy_size} px on "
        f"{proxy['train_fraction']:.0%}; {args.seeds} seeds per finalized architecture"
    )
    print(
        f"{'arm':<22} {'trained':>7} {'compute (M img*ep*px)':>22} {'wall s':>7} "
        f"{'best mean':>9} {'sd':>6} {'params':>7}"
    )
    for a in arms:
        print(
            f"{a.name:<22} {a.trained:>7} {a.compute / unit:>22.2f} {a.seconds:>7.0f} "
            f"{a.best_mean:>9.4f} {a.best_sd:>6.4f} {a.best_params:>7,}"
        )
    print(f"(b) compute: search {b_search / unit:.2f} + finalize {b_finalize / unit:.2f}")
    print(
        f"Spearman rank correlation, proxy score vs full-fidelity mean over {len(b_scores)} "
        f"architectures: {rho:.2f} (p = {p_value:.2f})"
    )
    a, b = arms
    verdict = "equal or better" if b.best_mean >= a.best_mean else "worse"
    print(
        f"compute ratio (b)/(a): {b.compute / a.compute:.2f}x, at {verdict} accuracy "
        f"({b.best_mean - a.best_mean:+.4f} mean val_acc)"
    )
    # Finalizing only the proxy's top k (k <= K) is a prefix of what ran: its compute and
    # its best mean follow from the same trainings.
    print(f"{'(b) with top k':<16} {'compute (M)':>11} {'(b)/(a)':>8} {'best mean':>9}")
    cheapest = None
    for k, (compute, mean) in enumerate(prefixes, start=1):
        print(f"{k:<16} {compute / unit:>11.2f} {compute / a.compute:>8.2f} {mean:>9.4f}")
        if cheapest is None and mean >= a.best_mean:
            cheapest = (k, compute / a.compute)
    if cheapest is None:
        print("no top k reached (a)'s best mean")
    else:
        print(
            f"equal or better accuracy than (a) from top {cheapest[0]}: compute ratio "
            f"(b)/(a) = {cheapest[1]:.2f}x"
        )


if __name__ == "__main__":
    main()
