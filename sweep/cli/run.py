"""The commands that run trials: ``sweep run`` (start or continue a study, in this process or
a pool) and ``sweep worker`` (join one from any host). :mod:`sweep.cli` registers them.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from sweep.cli.options import add_overrides, add_space, add_storage

if TYPE_CHECKING:  # runners load inside the commands: `sweep --help` stays instant
    from runners import PoolOptions


def add_parsers(commands: Any) -> None:
    """Register ``run`` and ``worker``."""
    run = commands.add_parser("run", help="run or continue a study")
    add_space(run)
    run.add_argument(
        "--trials",
        type=int,
        required=True,
        help="finished trials the study should hold (resumes toward it)",
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    add_storage(run)
    _add_pool(run)
    run.set_defaults(handler=_run)

    finalize = commands.add_parser(
        "finalize",
        help="train a study's best architectures again at the final fidelity, several seeds "
        "each (resumable; then status and export use them)",
    )
    finalize.add_argument("--study", required=True)
    finalize.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="the K most accurate feasible trials (default: the Pareto front's members)",
    )
    finalize.add_argument(
        "--seeds",
        type=int,
        metavar="S",
        help="seeds per architecture (default: the space's fidelity.final.seeds, else 3)",
    )
    finalize.add_argument("--no-progress", action="store_true", help="no live progress display")
    add_storage(finalize)
    add_overrides(
        finalize, "override a setting of the study's space, e.g. fidelity.final.epochs=150"
    )
    _add_pool(finalize)
    finalize.set_defaults(handler=_finalize)

    worker = commands.add_parser(
        "worker",
        help="run trials of a study started by `sweep run` (from any host) until it is done",
    )
    worker.add_argument("--study", required=True)
    add_storage(worker)
    add_overrides(
        worker, "override a setting of the study's space on this host, e.g. dataset.root=DIR"
    )
    worker.set_defaults(handler=_worker)

    doctor = commands.add_parser(
        "doctor",
        help="find (and with --repair mend) what crashes left in a study; run it while no "
        "sweep works on the study",
    )
    doctor.add_argument("--study", required=True)
    add_storage(doctor)
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="fail dead workers' trials (queuing them again), end stale runs, close the parent",
    )
    doctor.set_defaults(handler=_doctor)


def _add_pool(parser: argparse.ArgumentParser) -> None:
    """Where trials run: ``--workers``, ``--gpus``, ``--workers-per-gpu``, ``--max-retries``."""
    pool = parser.add_argument_group("many workers (each a process; default: one, in this one)")
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


def _pool_options(args: argparse.Namespace) -> PoolOptions:
    """The checked pool options (:class:`runners.PoolOptions`)."""
    from runners import PoolOptions, parse_gpus
    from sweep.errors import SweepError

    for flag, value in (("--workers", args.workers), ("--workers-per-gpu", args.workers_per_gpu)):
        if value is not None and value < 1:
            raise SweepError(f"{flag}: must be at least 1")
    if args.max_retries < 0:
        raise SweepError("--max-retries: must be 0 or more")
    if args.workers is not None and args.gpus is not None:
        raise SweepError("--workers: give either --workers N or --gpus with --workers-per-gpu")
    return PoolOptions(
        workers=args.workers or 1,
        gpus=parse_gpus(args.gpus) if args.gpus is not None else None,
        workers_per_gpu=args.workers_per_gpu,
        max_retries=args.max_retries,
    )


def _run(args: argparse.Namespace) -> int:
    if sys.stderr.isatty():  # the imports take seconds: say so (a pipe gets results only)
        print(f"preparing: reading the space {args.space}", file=sys.stderr, flush=True)
    from sweep.errors import SweepError
    from sweep.search.catalog import find_space
    from sweep.search.space import load_space

    if args.trials < 1:
        raise SweepError("--trials: must be at least 1")
    options = _pool_options(args)
    space = load_space(args.space, args.overrides, args.data_dir)
    found = find_space(args.space)
    print(f"space: {found.path}" + (" (bundled with sweep)" if found.bundled else ""))
    if options.pooled:
        from runners.pool import run_pool

        summary = run_pool(
            space, args.trials, options, args.storage, show_progress=not args.no_progress
        )
    else:
        from runners.local import run_sweep

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
    print(
        f"MLflow parent run {summary.parent_run_id}; browse the study with `sweep ui` "
        "(it prints a link to this study's runs)"
    )
    return 0


def _finalize(args: argparse.Namespace) -> int:
    if sys.stderr.isatty():
        print(f"preparing: reading study {args.study}", file=sys.stderr, flush=True)
    from runners.finalize import run_finalize
    from sweep.errors import SweepError

    for flag, value in (("--top", args.top), ("--seeds", args.seeds)):
        if value is not None and value < 1:
            raise SweepError(f"{flag}: must be at least 1")
    summary = run_finalize(
        args.study,
        args.top,
        args.seeds,
        _pool_options(args),
        args.storage,
        overrides=args.overrides,
        data_dir=args.data_dir,
        show_progress=not args.no_progress,
    )
    plan = summary.plan
    print(
        f"study {summary.study_name}: {len(plan.chosen)} architectures x {plan.seeds} seeds "
        f"at {plan.fidelity}"
    )
    for f in summary.results:
        spread = f" +- {f.std:.4f}" if f.std is not None else ""
        print(
            f"trial {f.source.number}: proxy {f.source.val_acc:.4f} -> final "
            f"{f.mean:.4f}{spread} ({len(f.runs)}/{f.wanted} seeds), {f.params:,} parameters "
            f"({f.source.family})"
        )
    print(
        f"MLflow parent run {summary.parent_run_id} (runs tagged stage=final); "
        f"`sweep export --study {args.study}` now takes the finalized model"
    )
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


def _doctor(args: argparse.Namespace) -> int:
    from runners.doctor import check_study

    checkup = check_study(args.study, args.storage, repair=args.repair)
    for line in checkup.lines():
        print(line)
    return 0
