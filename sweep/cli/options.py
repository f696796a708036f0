"""Options that several commands share, defined once."""

from __future__ import annotations

import argparse


def add_storage(parser: argparse.ArgumentParser) -> None:
    """``--storage URL``: the Optuna storage."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: a journal file path (default $SWEEP_HOME/optuna.journal) "
        "or a database URL such as postgresql://user:pw@host/db",
    )


def add_space(parser: argparse.ArgumentParser) -> None:
    """``--space FILE`` with its overrides (``--set``, ``--data-dir``)."""
    parser.add_argument(
        "--space",
        required=True,
        metavar="FILE|NAME",
        help="search-space YAML file, or the name of a bundled one (see `sweep spaces`)",
    )
    add_overrides(parser, "override a YAML setting, e.g. --set fixed.epochs=1 (repeatable)")


def add_overrides(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--set KEY=VALUE`` (repeatable) and ``--data-dir DIR``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )
    parser.add_argument("--data-dir", metavar="DIR", help="shorthand for --set dataset.root=DIR")
