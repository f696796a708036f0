"""The ``sweep`` command: argument parsing and error formatting only.

Each command lives in a module of its own, its options beside its handler
(``add_parser(commands)`` registers both); the handler validates its arguments and calls one
library function. Heavy imports (torch, mlflow, optuna) happen inside the handlers, so
``sweep --help`` is instant. Errors are formatted here, once: a :class:`SweepError` is one
line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sweep.cli import prune_curve, results, run, spaces, teacher

COMMAND_MODULES = (run, spaces, results, teacher, prune_curve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Search small image classifiers under a hard parameter budget "
        "(Optuna + knowledge distillation + MLflow).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sweep`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes for git otherwise.
    # One progress display is ours; MLflow's per-download bars would interleave with it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow announces creating and migrating its store's tables at INFO; sweep says what it
    # prepares itself, and those lines would only break into the live display.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from sweep.errors import SweepError

    try:
        return int(args.handler(args))
    except SweepError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "sweep: interrupted: the running trials ended FAILED and do not count; "
            "re-run the same command to continue",
            file=sys.stderr,
        )
        return 130


__all__ = ["build_parser", "main"]
