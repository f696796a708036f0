"""One-shot pruning curves: validation accuracy and latency against parameter count.

For each rate a fresh copy of the checkpoint is pruned twice: structured (channels
removed, :func:`sweep.compress.prune.structured_pruner`, one step) and unstructured (smallest
weights zeroed, :func:`sweep.compress.prune.unstructured_prune`, masks baked in). Neither is
fine-tuned afterwards: the curves show what pruning alone costs, the floor that fine-tuning
would start from.

Structured pruning lowers the dense count and the latency; unstructured pruning lowers only the
nonzero count, since its tensors stay dense and run the same dense kernels. Latency is the median
wall time of one forward at batch 1 by default (a deployed classifier answers one image at a
time), both kinds timed in turns at each rate so that drift in the machine's load hits both alike.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from sweep.compress.prune import (
    IMPORTANCE,
    make_permanent,
    prune_step,
    structured_pruner,
    unstructured_prune,
)
from sweep.data import dataset_num_classes
from sweep.errors import SweepError
from sweep.models.budget import count_params
from sweep.paths import artifact_location, sweep_home, tracking_uri
from sweep.search.space import SearchSpace

# The teacher module's reader: weights-only loading, one-line messages naming the file.
from sweep.teacher.checkpoints import load_checkpoint_model
from sweep.teacher.trial_data import trial_data
from sweep.track.tracker import Tracker
from sweep.train import evaluate, resolve_device

EXPERIMENT = "sweep-prune-curves"
KINDS = ("structured", "unstructured")
CSV_NAME, PNG_NAME = "prune_curve.csv", "prune_curve.png"


@dataclass(frozen=True)
class CurvePoint:
    """One pruned model: its rate, kind, accuracy, sizes and latency."""

    rate: float
    kind: str
    val_acc: float
    params_dense: int
    params_nonzero: int
    latency_ms: float


@dataclass(frozen=True)
class CurveReport:
    """What ``sweep prune-curve`` measured and wrote."""

    points: list[CurvePoint]
    architecture: str
    files: list[Path]
    run_id: str


def parse_rates(text: str) -> tuple[float, ...]:
    """Parse ``--rates``: comma-separated distinct numbers in ``[0, 1)``, returned ascending.

    Raises:
        SweepError: ``--rates: ...`` naming the item at fault.
    """
    rates: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            rate = float(item)
        except ValueError:
            raise SweepError(
                f"--rates: {item!r} is not a number; expected e.g. 0,0.25,0.5,0.75"
            ) from None
        if not 0.0 <= rate < 1.0:  # also refuses nan and inf
            raise SweepError(f"--rates: {item} is outside [0, 1)")
        if rate in rates:
            raise SweepError(f"--rates: {item} is given twice")
        rates.append(rate)
    return tuple(sorted(rates))


def _pruned(
    model: nn.Module,
    kind: str,
    rate: float,
    image_size: int,
    importance: str,
    device: torch.device,
    taylor_batch: tuple[Tensor, Tensor] | None,
) -> nn.Module:
    pruned = copy.deepcopy(model).to(device).eval()  # eval: a Taylor batch must not move BN
    if kind == "structured":
        pruner = structured_pruner(pruned, image_size, importance=importance, ratio=rate)
        prune_step(pruner, pruned, taylor_batch)
    else:
        unstructured_prune(pruned, float(rate))  # an int would be a count of weights
        make_permanent(pruned)
    return pruned


@dataclass(frozen=True)
class Timing:
    """How latency is measured: where, images per forward, timed and untimed forwards."""

    device: torch.device = torch.device("cpu")
    batch: int = 1
    repeats: int = 30
    warmup: int = 5  # allocator, cuDNN autotuning and caches settle first

    @property
    def label(self) -> str:
        """The latency axis label."""
        return f"latency (ms, batch {self.batch}, {self.device.type})"


def measure_latency(models: Sequence[nn.Module], image_size: int, timing: Timing) -> list[float]:
    """Median milliseconds of one forward of each model (eval mode, on ``timing.device``).

    The models are timed in turns, so drift in the machine's load hits all alike; on CUDA
    each forward is bracketed by a synchronize, since kernels are launched asynchronously.
    """
    images = torch.zeros(timing.batch, 3, image_size, image_size, device=timing.device)
    sync = torch.cuda.synchronize if timing.device.type == "cuda" else (lambda: None)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            for _ in range(timing.warmup):
                model(images)
        for _ in range(timing.repeats):
            for model, spent in zip(models, times, strict=True):
                sync()
                start = time.perf_counter()
                model(images)
                sync()
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1000.0 for spent in times]


def _check_importance(importance: str) -> None:
    if importance not in IMPORTANCE:
        raise SweepError(f"--importance: {importance!r}; known: {', '.join(IMPORTANCE)}")


def prune_curve(
    model: nn.Module,
    val: Iterable[Any],
    rates: Sequence[float],
    *,
    image_size: int,
    device: torch.device,
    importance: str = "magnitude",
    taylor_batch: tuple[Tensor, Tensor] | None = None,
    timing: Timing | None = None,
    on_point: Callable[[CurvePoint], None] | None = None,
) -> list[CurvePoint]:
    """Prune a copy of ``model`` at each rate, both ways, and measure it (no fine-tuning).

    Args:
        model: the trained classifier; left untouched.
        val: the validation batches ``(images, labels)``.
        rates: in ``[0, 1)``: each channel group's pruned fraction (structured) and the fraction
            of all conv/linear weights zeroed (unstructured, global L1).
        image_size: input side, for tracing and for the latency input.
        device: where copies are pruned and evaluated.
        importance: structured criterion, a name in :data:`sweep.compress.prune.IMPORTANCE`.
        taylor_batch: ``(images, labels)`` scoring channels, for criteria that need gradients.
        timing: how latency is measured (default: batch 1 on ``device``).
        on_point: called with each point as it is measured.

    Returns:
        Two points per rate, structured first.

    Raises:
        SweepError: an unknown importance, or one that needs gradients without a batch.
    """
    _check_importance(importance)
    if IMPORTANCE[importance].needs_gradients and taylor_batch is None:
        raise SweepError(f"--importance: {importance} needs a training batch to score channels")
    timing = timing or Timing(device)
    points: list[CurvePoint] = []
    for rate in rates:
        models = [
            _pruned(model, k, rate, image_size, importance, device, taylor_batch) for k in KINDS
        ]
        measured = [
            (evaluate(m, val, device)[0], count_params(m, "dense"), count_params(m, "nonzero"))
            for m in models
        ]
        models = [m.to(timing.device) for m in models]
        latencies = measure_latency(models, image_size, timing)
        for kind, (acc, dense, nonzero), ms in zip(KINDS, measured, latencies, strict=True):
            points.append(CurvePoint(rate, kind, acc, dense, nonzero, ms))
            if on_point is not None:
                on_point(points[-1])
    return points


def curve_csv(points: Sequence[CurvePoint]) -> str:
    """The points as CSV: ``rate,kind,val_acc,params_dense,params_nonzero,latency_ms``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, [f.name for f in fields(CurvePoint)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(p) for p in points)
    return buffer.getvalue()


def curve_figure(points: Sequence[CurvePoint], title: str, latency_label: str) -> Figure:
    """Accuracy against parameters (left) and latency against rate (right), both kinds.

    Structured points sit at their dense count, unstructured ones at their nonzero count: the
    weights each would need stored in a format that skips zeros. Points are labelled by rate.
    """
    fig = Figure(figsize=(11, 4.5))  # no pyplot: no global figure state to close
    acc_ax, lat_ax = fig.subplots(1, 2)
    # Rate labels above the structured points and below the unstructured ones: they overlap.
    styles = {"structured": ("tab:blue", "o", 4), "unstructured": ("tab:orange", "s", -10)}
    for kind, (colour, marker, dy) in styles.items():
        mine = [p for p in points if p.kind == kind]
        count = "dense" if kind == "structured" else "nonzero"
        xs = [getattr(p, f"params_{count}") for p in mine]
        accs = [p.val_acc for p in mine]
        style = {"color": colour, "marker": marker}
        acc_ax.plot(xs, accs, label=f"{kind} ({count} params)", **style)
        for x, acc, p in zip(xs, accs, mine, strict=True):
            note = {"textcoords": "offset points", "xytext": (3, dy), "fontsize": 7}
            acc_ax.annotate(f"{p.rate:g}", (x, acc), color=colour, **note)
        lat_ax.plot([p.rate for p in mine], [p.latency_ms for p in mine], label=kind, **style)
    acc_ax.set_xscale("log")
    acc_ax.set(xlabel="parameters", ylabel="validation accuracy", title=f"{title}: one-shot")
    lat_ax.set(xlabel="pruning rate", ylabel=latency_label, title="inference latency")
    lat_ax.set_ylim(bottom=0)
    for ax in (acc_ax, lat_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_files(out: Path, files: Mapping[str, str | bytes]) -> list[Path]:
    """Write each file into ``out`` as a hidden temporary renamed over the final name."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out: {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, out / name)
    return [out / name for name in files]


def publish_curve(
    points: Sequence[CurvePoint],
    out: Path,
    tracker: Tracker,
    run_name: str,
    params: Mapping[str, Any],
    latency_label: str = Timing().label,
) -> tuple[list[Path], str]:
    """Write the CSV and PNG to ``out`` and log them, and per-rate metrics, as one MLflow run.

    Metrics are ``<kind>_<val_acc|params_dense|params_nonzero|latency_ms>`` and ``rate``, at
    step = the rate's index.

    Returns:
        The written files and the run id.
    """
    figure = curve_figure(points, run_name, latency_label)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    files = write_files(out, {CSV_NAME: curve_csv(points), PNG_NAME: png.getvalue()})
    run_id = tracker.start_run(run_name, params, {"sweep.role": "prune-curve"})
    for step, rate in enumerate(sorted({p.rate for p in points})):
        metrics = {"rate": rate}
        for p in (p for p in points if p.rate == rate):
            measured = asdict(p)
            metrics |= {f"{p.kind}_{k}": measured[k] for k in list(measured)[2:]}
        tracker.log_metrics(run_id, metrics, step=step)
    for path in files:
        tracker.log_artifact(run_id, path)
    tracker.set_status(run_id, "FINISHED")
    return files, run_id


def _device(name: str, what: str) -> torch.device:
    try:
        return resolve_device(name)
    except ValueError as exc:
        raise SweepError(f"{what}: {exc}") from None


def run_prune_curve(
    checkpoint: str | Path,
    space: SearchSpace,
    rates: Sequence[float],
    out: Path,
    *,
    config: str | Path | None = None,
    importance: str = "magnitude",
    latency_device: str = "cpu",
    latency_batch: int = 1,
    home: Path | None = None,
    on_point: Callable[[CurvePoint], None] | None = None,
    progress: bool = True,
) -> CurveReport:
    """Curves of a checkpoint on the space's validation split, written to ``out`` and MLflow.

    Evaluates on ``train.device`` of the space, times on ``latency_device``; logs one run in
    the ``sweep-prune-curves`` experiment. See :func:`prune_curve` (one-shot, no fine-tuning).

    Raises:
        SweepError: bad data, checkpoint, config, device or flag, naming the file or the flag.
    """
    home = home or sweep_home()
    _check_importance(importance)
    if latency_batch < 1:
        raise SweepError("--latency-batch: must be at least 1")
    base = space.defaults
    try:
        num_classes = dataset_num_classes(base.dataset, home)
    except SweepError as exc:
        raise SweepError(f"{space.source}: {exc}") from None
    model, architecture = load_checkpoint_model(checkpoint, num_classes, config)
    device = _device(base.train.device, f"{space.source}: train.device")
    timing = Timing(_device(latency_device, "--latency-device"), latency_batch)
    tracker = Tracker(tracking_uri(home), EXPERIMENT, artifact_location(home))  # fail early
    data = trial_data(base, home, device, progress=progress)
    # Taylor scores come from one batch of augmented training images, as in a trial.
    taylor = tuple(next(iter(data.train))[:2]) if IMPORTANCE[importance].needs_gradients else None
    size = base.dataset.image_size
    points = prune_curve(
        model,
        data.val,
        rates,
        image_size=size,
        device=device,
        importance=importance,
        taylor_batch=taylor,
        timing=timing,
        on_point=on_point,
    )
    params = {
        "checkpoint": str(Path(checkpoint).resolve()),
        "architecture": architecture,
        "importance": importance,
        "rates": ",".join(f"{r:g}" for r in rates),
        "image_size": size,
        "device": str(device),
        "latency_device": str(timing.device),
        "latency_batch": timing.batch,
        "space": space.source,
    }
    name = f"{architecture}-{Path(checkpoint).stem}"
    files, run_id = publish_curve(points, out, tracker, name, params, timing.label)
    return CurveReport(points, architecture, files, run_id)
