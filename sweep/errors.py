"""The error types that reach the user as one line and exit code 2."""

from __future__ import annotations


class SweepError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable service).

    The CLI prints ``sweep: error: <message>`` and exits with code 2. The message
    names the file and the key (or folder) it is about.
    """


class ConfigError(SweepError):
    """A search-space YAML or a ``--set`` override is invalid."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class DataError(SweepError):
    """A data folder is missing, empty or laid out in a way the reader does not know."""


class CheckpointError(SweepError):
    """A checkpoint file cannot be read or does not match the model it should load into."""
