"""``sweep spaces``: the search spaces bundled with sweep, each with its purpose."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(commands: Any) -> None:
    """Register ``spaces``."""
    spaces = commands.add_parser(
        "spaces", help="list the bundled search spaces (--space NAME runs one from any folder)"
    )
    spaces.add_argument("--paths", action="store_true", help="also print each file's path")
    spaces.set_defaults(handler=_spaces)


def _spaces(args: argparse.Namespace) -> int:
    from sweep.search.catalog import bundled_spaces

    spaces = bundled_spaces()
    width = max(len(space.name) for space in spaces)
    for space in spaces:
        print(f"{space.name:<{width}}  {space.purpose}")
        if args.paths:
            print(f"{'':<{width}}  {space.path}")
    print("\nrun one: sweep run --space NAME; a local file of the same name is read first")
    return 0
