"""sweep.search.catalog: ``--space`` as a file or a bundled space's name, and ``sweep spaces``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweep.errors import ConfigError
from sweep.search.catalog import bundled_spaces, find_space
from sweep.search.space import load_space

BUNDLED = {"all_methods", "demo", "kd_feature", "kd_small", "prune_small"}


def test_every_bundled_space_has_a_one_line_purpose() -> None:
    spaces = bundled_spaces()
    assert {space.name for space in spaces} == BUNDLED
    for space in spaces:
        assert space.bundled and space.path.is_file()
        assert 20 < len(space.purpose) <= 90, space  # one line, fits a terminal
        assert not space.purpose.endswith((",", ":")), space  # a whole sentence


@pytest.mark.parametrize("argument", ["kd_small", "kd_small.yaml"])
def test_a_name_that_is_no_file_is_a_bundled_space(
    argument: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # any folder
    found = find_space(argument)
    assert found.bundled and found.name == "kd_small"
    space = load_space(argument)
    assert space.study_name == "kd_small" and space.source == str(found.path)


def test_a_local_file_of_the_same_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    document = yaml.safe_load(find_space("demo").path.read_text())
    document["study"] = "my_demo"
    Path("demo.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    found = find_space("demo.yaml")
    assert not found.bundled and found.path == tmp_path / "demo.yaml"
    assert load_space("demo.yaml").study_name == "my_demo"
    assert find_space("demo").bundled  # no file called "demo": the bundled one


def test_unknown_names_and_missing_paths_list_the_bundled_spaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        find_space("kd_smal.yaml")
    assert str(error.value) == (
        "kd_smal.yaml: no such file, nor a bundled space of that name (bundled: all_methods, "
        "demo, kd_feature, kd_small, prune_small; see `sweep spaces`)"
    )
    # A path into a folder is a path: never silently replaced by a bundled space.
    with pytest.raises(ConfigError, match="^spaces/kd_small.yaml: no such file"):
        find_space("spaces/kd_small.yaml")
    with pytest.raises(ConfigError, match="is not a file"):
        find_space(str(tmp_path))


def test_sweep_spaces_lists_them_from_any_folder(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "spaces"],
        cwd=tmp_path,
        env={**os.environ, "SWEEP_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = listed.stdout.splitlines()
    for space in bundled_spaces():
        assert any(line.split()[:1] == [space.name] and space.purpose in line for line in lines)
    assert not (tmp_path / "home").exists()  # listing writes nothing
