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
from typing import NoReturn

from sweep import interrupts
from sweep.cli import prune_curve, results, run, spaces, teacher

COMMAND_MODULES = (run, spaces, results, teacher, prune_curve)
# The commands whose interruption leaves trials to resume.
TRIAL_COMMANDS = ("run", "finalize", "worker")
# Servers that stop on a signal as they always have.
SERVER_COMMANDS = ("ui", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="sweep",
        description="Search small image classifiers under a hard parameter budget "
        "(Optuna + knowledge distillation + MLflow).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(commands)
    return parser


def _version() -> str:
    """The installed distribution's version (pyproject.toml's ``version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sweep`` console script; returns the exit code."""
    from sweep.errors import SweepError

    command = None
    try:
        # From the first moment: a Ctrl-C is one line and exit 130 wherever it lands.
        with interrupts.honoured():
            args = build_parser().parse_args(argv)
            command = args.command
            os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # MLflow probes for git.
            # One progress display is ours; MLflow's per-download bars would interleave.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            # MLflow announces creating and migrating its store's tables at INFO; sweep says
            # what it prepares itself, and those lines would only break into the display.
            logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            if command in TRIAL_COMMANDS:
                # Held for their few seconds: an interrupt inside torch's C++ start-up
                # aborts the process ("terminate called ... KeyboardInterrupt").
                with interrupts.deferred():
                    import mlflow  # noqa: F401
                    import optuna  # noqa: F401
                    import torch  # noqa: F401
            if command in SERVER_COMMANDS:
                with interrupts.as_python_does():
                    return int(args.handler(args))
            return int(args.handler(args))
    except SweepError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        trials = (
            ": the running trials ended FAILED and do not count; re-run the same command to "
            "continue"
            if command in TRIAL_COMMANDS
            else ""
        )
        print(f"sweep: interrupted{trials}", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The ``sweep`` console script (and ``python -m sweep.cli``): :func:`main`'s code as the
    exit status.

    An interrupted command leaves at once with 130, once its clean-up is done and its output
    flushed, skipping interpreter shutdown: through it, about one interrupted run in twenty
    ended killed by SIGINT (returncode -2) after it had printed its line and returned 130.
    """
    code = main()
    if code == 130:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


__all__ = ["build_parser", "entry", "main"]
