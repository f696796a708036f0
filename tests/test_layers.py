"""The package is a stack: pyproject.toml's import-linter contracts hold, and name every layer."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def _top_level_modules() -> set[str]:
    """sweep's subpackages and modules, and runners: what the stack must place."""
    found = {"runners"}
    for path in (ROOT / "sweep").iterdir():
        is_package = path.is_dir() and (path / "__init__.py").exists()
        is_module = path.suffix == ".py" and path.name != "__init__.py"
        if is_package or is_module:
            found.add(f"sweep.{path.stem}")
    return found


def test_every_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_stack_places_every_package_and_module():
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    assert _top_level_modules() - placed == set(), "add them to the layers contract"
    assert placed - _top_level_modules() == set(), "the contract names what does not exist"
