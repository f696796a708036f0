"""State-dict files: the one place sweep reads and writes model weights.

Every load is weights-only (``torch.load(..., weights_only=True)``): a checkpoint that holds
code is refused, not run. Every save is atomic: a crash never leaves a half-written file
under the final name.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from sweep import interrupts
from sweep.errors import CheckpointError

# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else "empty or truncated"
    return first if len(first) <= 200 else first[:197] + "..."


# torch.save's legacy (non-zip) format starts with this pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _is_plain_pickle(path: Path) -> bool:
    """A file that ``pickle.dump`` wrote: a pickle opcode stream that is neither torch.save's
    zip archive nor its legacy format."""
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_MAGIC))
    return head[:1] == b"\x80" and not head.startswith(_LEGACY_MAGIC)


def read_checkpoint(path: Path) -> Any:
    """Load a checkpoint file weights-only; a missing or unreadable file is a CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint is not a file")
    try:
        # torch warns about what it then refuses (a pickle protocol it does not expect): the
        # refusal below says it in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, ...)
        if _is_plain_pickle(path):
            raise CheckpointError(
                f"{path}: a plain pickle, not a torch.save checkpoint: it may hold code, so it "
                "is not loaded; save model.state_dict() with torch.save instead"
            ) from exc
        text = str(exc)
        # torch words it "Unsupported global: GLOBAL x.y" or, from 2.14 on for blocked
        # modules, "Trying to load unsupported GLOBAL x.y whose module x is blocked".
        refused = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", text, re.IGNORECASE)
        if refused:
            # Refusing arbitrary pickles is deliberate: loading them could run code from the file.
            raise CheckpointError(
                f"{path}: refused by weights-only loading: it holds code (a pickled "
                f"{refused[1]}), not only tensors; save model.state_dict() instead"
            ) from exc
        detail = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
        reason = detail[1].strip() if detail else _one_line(exc)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint, the file is corrupt or of another kind "
            f"({type(exc).__name__}: {reason})"
        ) from exc


def unwrap_state_dict(path: Path, obj: Any) -> dict[str, Tensor]:
    """Unwrap ``{"state_dict": sd}`` / ``{"model": sd}`` and strip wrapper key prefixes."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty dict" if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: not a state dict (found {kind}, expected name -> tensor)")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(
                f"{path}: not a state dict: entry {key!r} holds {type(value).__name__}, "
                "expected a tensor"
            )
    state = OrderedDict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            consume_prefix_in_state_dict_if_present(state, prefix)
    return dict(state)


def save_state_dict(state_dict: Mapping[str, Tensor], path: str | Path) -> Path:
    """Save a state dict (as CPU tensors) atomically, creating the folder if needed.

    Writes a temporary file in the target folder and renames it over ``path``, so a crash
    never leaves a half-written checkpoint under the final name.

    Args:
        state_dict: parameter name -> tensor.
        path: the destination file.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_state = {k: v.detach().cpu() for k, v in state_dict.items()}
    # Opened as open() opens any new file (mkstemp's would be 0600, unlike the files beside
    # it); "x" with a random name keeps it the writer's own.
    tmp_name = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # A Ctrl-C inside torch.save's zip writer surfaces as its RuntimeError ("unexpected
        # pos"), not as the interrupt: the write is short, so it is held back until the file
        # is in place.
        with interrupts.deferred():
            with open(tmp_name, "xb") as f:
                torch.save(cpu_state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict file: weights-only, wrappers unwrapped, key prefixes stripped.

    Raises:
        CheckpointError: missing, unreadable, holding code, or not a name -> tensor mapping.
    """
    path = Path(path)
    return unwrap_state_dict(path, read_checkpoint(path))


def fold_masks(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The weights a model uses: each ``X_orig`` times its ``X_mask``, stored as ``X``.

    ``torch.nn.utils.prune`` keeps a masked weight as ``X_orig`` plus an ``X_mask`` buffer
    until :func:`~sweep.compress.prune.make_permanent`; a checkpoint or a nonzero count wants
    their product under the plain name. Other entries pass through.
    """
    folded = dict(state)
    for key in [k for k in folded if k.endswith("_orig")]:
        base = key[: -len("_orig")]
        if base + "_mask" in folded:
            folded[base] = folded.pop(key) * folded.pop(base + "_mask")
    return folded
