"""Where a ``--space`` comes from: a YAML file on disk, or a space bundled with sweep by name.

A path that exists wins, so a local ``kd_small.yaml`` is read before the bundled one; any
other argument is looked up among the bundled spaces with or without ``.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sweep.errors import ConfigError


@dataclass(frozen=True)
class SpaceFile:
    """A search-space file: its name, its one-line purpose, where it is, whether bundled."""

    name: str
    purpose: str
    path: Path
    bundled: bool


def _bundled_folder() -> Path:
    return Path(str(resources.files("search_spaces")))


def _purpose(path: Path) -> str:
    """The first comment line: each space opens with its one-line purpose."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def bundled_spaces() -> list[SpaceFile]:
    """Every space shipped inside the package, by name."""
    return [
        SpaceFile(path.stem, _purpose(path), path, bundled=True)
        for path in sorted(_bundled_folder().glob("*.yaml"))
    ]


def find_space(argument: str | Path) -> SpaceFile:
    """The file a ``--space`` argument names.

    Raises:
        ConfigError: neither an existing file nor a bundled space's name; the message lists
            the bundled names.
    """
    path = Path(argument).expanduser()
    if path.is_file():
        return SpaceFile(path.stem, _purpose(path), path.resolve(), bundled=False)
    if path.exists():
        raise ConfigError(str(argument), "", "is not a file")
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    spaces = {space.name: space for space in bundled_spaces()}
    if path.parent == Path(".") and name in spaces:
        return spaces[name]
    raise ConfigError(
        str(argument),
        "",
        f"no such file, nor a bundled space of that name (bundled: {', '.join(spaces)}; "
        "see `sweep spaces`)",
    )
