"""The ``sweep`` command: argument parsing and error formatting only.

Each command validates its arguments and calls one library function. Heavy imports
(torch, mlflow, optuna) happen inside the command bodies so ``sweep --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def _storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: a journal file path (default $SWEEP_HOME/optuna.journal) "
        "or a database URL such as postgresql://user:pw@host/db",
    )


def _space(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, metavar="FILE", help="search-space YAML")
    _overrides(parser, "override a YAML setting, e.g. --set fixed.epochs=1 (repeatable)")


def _overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )
    parser.add_argument("--data-dir", metavar="DIR", help="shorthand for --set dataset.root=DIR")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Search small image classifiers under a hard parameter budget "
        "(Optuna + knowledge distillation + MLflow).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run or continue a study")
    _space(run)
    run.add_argument(
        "--trials",
        type=int,
        required=True,
        help="finished trials the study should hold (resumes toward it)",
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    _storage(run)
    pool = run.add_argument_group("many workers (each a process; default: one, in this one)")
    pool.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, spread over the GPUs, else splitting the CPU cores (default 1)",
    )
    pool.add_argument(
        "--gpus", metavar="all|0,1", help="GPUs to use, --workers-per-gpu processes on each"
    )
    pool.add_argument(
        "--workers-per-gpu", type=int, default=1, metavar="K", help="with --gpus (default 1)"
    )
    pool.add_argument(
        "--max-retries",
        type=int,
        default=1,
        metavar="N",
        help="times a trial whose worker died is run again (default 1)",
    )

    worker = commands.add_parser(
        "worker",
        help="run trials of a study started by `sweep run` (from any host) until it is done",
    )
    worker.add_argument("--study", required=True)
    _storage(worker)
    _overrides(
        worker, "override a setting of the study's space on this host, e.g. dataset.root=DIR"
    )

    status = commands.add_parser("status", help="trials by state, best trial, Pareto front")
    status.add_argument("--study", required=True)
    _storage(status)

    ui = commands.add_parser("ui", help="start the MLflow UI on the sweep's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")

    export = commands.add_parser("export", help="write the best feasible student")
    export.add_argument("--study", required=True)
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--data-dir", metavar="DIR", help="data folder for the reload check")
    export.add_argument(
        "--int8",
        action="store_true",
        help="also write student_int8.pt2: static int8, calibrated on training images, "
        "with its accuracy and size next to the float model's in export.json",
    )
    _storage(export)

    predict = commands.add_parser("predict", help="write Id,Category predictions")
    predict.add_argument("--study", required=True)
    predict.add_argument(
        "--data-dir", required=True, metavar="DIR", help="folder holding evaluation/"
    )
    predict.add_argument("--out", type=Path, default=Path("predict.csv"))
    _storage(predict)

    teacher = commands.add_parser("teacher", help="teacher commands")
    teacher_commands = teacher.add_subparsers(dest="teacher_command", required=True)
    teacher_train = teacher_commands.add_parser(
        "train", help="train the space's ResNet18 teacher from scratch"
    )
    _space(teacher_train)
    teacher_cache = teacher_commands.add_parser(
        "cache", help="compute the teacher's soft labels over augmented views, once"
    )
    _space(teacher_cache)
    teacher_cache.add_argument("--views", type=int, help="augmented views (default kd.views)")

    prune_curve = commands.add_parser(
        "prune-curve",
        help="val accuracy and latency vs parameters, structured and unstructured pruning",
        description="Prune a checkpoint (teacher or student) at each rate, one-shot (no "
        "fine-tuning), both structured (channels removed) and unstructured (weights zeroed); "
        "evaluate on the space's validation split, time a forward, write prune_curve.csv and "
        "prune_curve.png and log them to the MLflow experiment sweep-prune-curves.",
    )
    _space(prune_curve)
    prune_curve.add_argument(
        "--checkpoint", required=True, type=Path, metavar="FILE", help="a state dict file"
    )
    prune_curve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a student's student_config.yaml or config.yaml (default: the one next to "
        "--checkpoint; a ResNet18 teacher needs none)",
    )
    prune_curve.add_argument(
        "--rates",
        default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        help="comma-separated pruning rates in [0, 1) (default %(default)s)",
    )
    prune_curve.add_argument(
        "--importance",
        default="magnitude",
        metavar="NAME",
        help="channel criterion: magnitude (default), bn_scale, taylor",
    )
    prune_curve.add_argument(
        "--latency-device", default="cpu", metavar="DEVICE", help="where latency is timed (cpu)"
    )
    prune_curve.add_argument(
        "--latency-batch", type=int, default=1, metavar="N", help="images per timed forward (1)"
    )
    prune_curve.add_argument("--out", type=Path, default=Path("prune-curve"), metavar="DIR")
    return parser


def _run(args: argparse.Namespace) -> int:
    from runners import PoolOptions, parse_gpus
    from sweep.errors import SweepError
    from sweep.space import load_space

    if args.trials < 1:
        raise SweepError("--trials: must be at least 1")
    for flag, value in (("--workers", args.workers), ("--workers-per-gpu", args.workers_per_gpu)):
        if value is not None and value < 1:
            raise SweepError(f"{flag}: must be at least 1")
    if args.max_retries < 0:
        raise SweepError("--max-retries: must be 0 or more")
    if args.workers is not None and args.gpus is not None:
        raise SweepError("--workers: give either --workers N or --gpus with --workers-per-gpu")
    options = PoolOptions(
        workers=args.workers or 1,
        gpus=parse_gpus(args.gpus) if args.gpus is not None else None,
        workers_per_gpu=args.workers_per_gpu,
        max_retries=args.max_retries,
    )
    space = load_space(args.space, args.overrides, args.data_dir)
    if options.pooled:
        from runners.pool import run_pool

        summary = run_pool(
            space, args.trials, options, args.storage, show_progress=not args.no_progress
        )
    else:
        from sweep.study import run_sweep

        summary = run_sweep(
            space,
            args.trials,
            args.storage,
            show_progress=not args.no_progress,
            max_retries=options.max_retries,
        )
    print(f"study {summary.study_name}: {summary.finished} finished trials")
    if summary.best is not None:
        b = summary.best
        print(
            f"best feasible: trial {b.number} val_acc {b.val_acc:.4f} "
            f"with {b.params:,} parameters ({b.family})"
        )
    print("Pareto front: " + ", ".join(f"{r.params:,}->{r.val_acc:.4f}" for r in summary.front))
    print(f"MLflow parent run {summary.parent_run_id}: see `sweep ui`")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from runners.worker import run_worker

    summary = run_worker(
        args.study, args.storage, overrides=args.overrides, data_dir=args.data_dir
    )
    print(
        f"worker: ran {summary.trials_run} trials; study {summary.study_name} holds "
        f"{summary.finished}/{summary.target} finished trials"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from sweep.status import print_status

    print_status(args.study, args.storage)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from sweep.paths import sweep_home, tracking_uri

    uri = tracking_uri(sweep_home())
    if uri.startswith(("http://", "https://")):
        print(f"MLflow is served at {uri}")
        return 0
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [
        mlflow,
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"MLflow UI at http://{args.host}:{args.port} (store {uri}); Ctrl-C stops it")
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def _export(args: argparse.Namespace) -> int:
    from sweep.export import export_best

    result = export_best(
        args.study, args.out, args.storage, data_dir=args.data_dir, int8=args.int8
    )
    print(
        f"exported trial {result.trial} ({result.params:,} parameters) to {result.out}; "
        f"reload check: logged val_acc {result.logged_val_acc:.4f}, "
        f"reloaded {result.reloaded_val_acc:.4f}"
    )
    if result.int8_val_acc is not None:
        print(f"int8: val_acc {result.int8_val_acc:.4f} (student_int8.pt2)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sweep.export import predict

    rows = predict(args.study, args.data_dir, args.out, args.storage)
    print(f"wrote {rows} predictions to {args.out}")
    return 0


def _teacher(args: argparse.Namespace) -> int:
    from sweep.paths import sweep_home
    from sweep.preflight import preflight
    from sweep.space import load_space
    from sweep.teacher_store import ensure_teacher, teacher_path

    space = load_space(args.space, args.overrides, args.data_dir)
    home = sweep_home()
    checked = preflight(space, home)
    base = space.trial_config({})
    path = teacher_path(base, checked.num_classes, home)
    if path.exists():
        print(f"teacher already trained: {path}")
        return 0

    def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        print(f"teacher epoch {epoch + 1}/{epochs} val_acc {metrics['val_acc']:.4f}", flush=True)

    _, path = ensure_teacher(base, checked.num_classes, home, on_epoch)
    print(f"teacher saved to {path}")
    return 0


def _prune_curve(args: argparse.Namespace) -> int:
    from sweep.prune_curve import EXPERIMENT, CurvePoint, parse_rates, run_prune_curve
    from sweep.space import load_space

    rates = parse_rates(args.rates)
    space = load_space(args.space, args.overrides, args.data_dir)

    def on_point(p: CurvePoint) -> None:
        if p.rate == rates[0] and p.kind == "structured":  # the header, once
            print(
                f"{'rate':>5} {'kind':<12} {'val_acc':>7} {'dense':>11} "
                f"{'nonzero':>11} {'latency_ms':>10}"
            )
        print(
            f"{p.rate:>5g} {p.kind:<12} {p.val_acc:>7.4f} {p.params_dense:>11,} "
            f"{p.params_nonzero:>11,} {p.latency_ms:>10.3f}",
            flush=True,
        )

    report = run_prune_curve(
        args.checkpoint,
        space,
        rates,
        args.out,
        config=args.config,
        importance=args.importance,
        latency_device=args.latency_device,
        latency_batch=args.latency_batch,
        on_point=on_point,
    )
    print(f"{report.architecture}: wrote {', '.join(str(f) for f in report.files)}")
    print(f"MLflow run {report.run_id} in experiment {EXPERIMENT}: see `sweep ui`")
    return 0


COMMANDS = {
    "run": _run,
    "worker": _worker,
    "status": _status,
    "ui": _ui,
    "export": _export,
    "predict": _predict,
    "teacher": _teacher,
    "prune-curve": _prune_curve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sweep`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes for git otherwise.
    # One progress display is ours; MLflow's per-download bars would interleave with it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from sweep.errors import SweepError

    try:
        return COMMANDS[args.command](args)
    except SweepError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
