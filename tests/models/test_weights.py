"""State-dict files: weights-only reading, wrappers and prefixes, atomic saving, masks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sweep.errors import CheckpointError
from sweep.models.weights import fold_masks, load_state_dict_file, save_state_dict


def test_save_is_atomic_and_loads_back(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0), "b": torch.ones(2)}
    path = save_state_dict(state, tmp_path / "sub" / "s.ckpt")
    assert [p.name for p in path.parent.iterdir()] == ["s.ckpt"]  # no temporary file left
    loaded = load_state_dict_file(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_wrappers_and_key_prefixes_are_removed(
    tmp_path: Path, prefix: str, wrapper: str | None
) -> None:
    state = {f"{prefix}conv.weight": torch.ones(1), f"{prefix}fc.bias": torch.zeros(1)}
    torch.save({wrapper: state} if wrapper else state, tmp_path / "s.ckpt")
    assert sorted(load_state_dict_file(tmp_path / "s.ckpt")) == ["conv.weight", "fc.bias"]


def test_a_prefix_on_some_keys_only_is_kept(tmp_path: Path) -> None:
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, tmp_path / "s.ckpt")
    assert sorted(load_state_dict_file(tmp_path / "s.ckpt")) == ["b", "module.a"]


class _RunsCode:
    """Pickles as a call of os.system: what a malicious checkpoint holds."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo this must never run",))


def test_unreadable_files_are_refused_in_one_line(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2), tmp_path / "module.ckpt")  # a pickled module: code, not weights
    with pytest.raises(CheckpointError, match="refused by weights-only loading") as refused:
        load_state_dict_file(tmp_path / "module.ckpt")
    assert "\n" not in str(refused.value)
    torch.save({"w": torch.ones(1), "run": _RunsCode()}, tmp_path / "code.ckpt")
    with pytest.raises(CheckpointError, match="it holds code .*posix.system.*, not only tensors"):
        load_state_dict_file(tmp_path / "code.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(CheckpointError, match="cut.ckpt: not a readable PyTorch checkpoint"):
        load_state_dict_file(tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match="none.ckpt: checkpoint not found"):
        load_state_dict_file(tmp_path / "none.ckpt")
    torch.save({"w": [1, 2]}, tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="entry 'w' holds list"):
        load_state_dict_file(tmp_path / "list.ckpt")


def test_fold_masks_stores_the_weight_the_model_uses() -> None:
    layer = nn.Linear(4, 2)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    folded = fold_masks(layer.state_dict())
    assert sorted(folded) == ["bias", "weight"]
    torch.testing.assert_close(folded["weight"], layer.weight_orig * layer.weight_mask)
    assert int((folded["weight"] == 0).sum()) == 4
    plain = {"weight": torch.ones(1), "other_mask": torch.zeros(1)}
    assert fold_masks(plain) == plain  # a mask without its _orig is left alone


def test_a_saved_checkpoint_has_the_mode_of_any_new_file(tmp_path: Path) -> None:
    beside = tmp_path / "export.json"
    beside.write_text("{}")
    path = save_state_dict({"w": torch.zeros(1)}, tmp_path / "student_best.ckpt")
    assert path.stat().st_mode & 0o777 == beside.stat().st_mode & 0o777
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "student_best.ckpt"]
