"""``python -m sweep.cli``: the same as the ``sweep`` console script."""

from sweep.cli import entry

entry()
