"""Export the best feasible student, prove it reloads, and write predictions.

The checkpoint and the trial's ``config.yaml`` come from the trial's MLflow run; the model
is rebuilt from the config, loaded with ``weights_only=True``, counted against the budget
and re-evaluated on the validation split. A reloaded accuracy that differs from the logged
one by more than one image fails loudly: a checkpoint that does not reproduce its number
must not be handed in.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from sweep.budget import count_macs, count_params, model_summary
from sweep.compression import build_planned
from sweep.config import TrialConfig, from_dict, to_dict
from sweep.data import IMAGENET_MEAN, IMAGENET_STD, class_names, evaluation_loader
from sweep.errors import CheckpointError, SweepError
from sweep.pareto import TrialRecord, best_trial
from sweep.paths import sweep_home, tracking_uri
from sweep.tracking import Tracker
from sweep.train import evaluate, resolve_device
from sweep.trial_data import trial_data

CHECKPOINT = "student_best.ckpt"
INT8_PROGRAM = "student_int8.pt2"


@dataclass(frozen=True)
class ExportResult:
    """What ``sweep export`` wrote and measured."""

    out: Path
    trial: int
    params: int
    logged_val_acc: float
    reloaded_val_acc: float
    int8_val_acc: float | None = None  # with ``int8``: the quantized program's accuracy


def load_trial_model(
    tracker: Tracker, trial: TrialRecord
) -> tuple[torch.nn.Module, TrialConfig, float]:
    """Rebuild a trial's student from its MLflow run (config + checkpoint).

    Returns:
        The student in eval mode, its config, and the structured pruning ratio it was built
        with (0 when unpruned), as logged in its ``config.yaml``.
    """
    if trial.run_id is None:
        raise SweepError(f"trial {trial.number}: has no MLflow run")
    with tempfile.TemporaryDirectory() as tmp:
        config_path = tracker.client.download_artifacts(trial.run_id, "config.yaml", tmp)
        ckpt_path = tracker.client.download_artifacts(trial.run_id, "checkpoint/student.ckpt", tmp)
        logged = yaml.safe_load(Path(config_path).read_text())
        num_classes = int(logged.pop("num_classes"))
        prune_ratio = float(logged.pop("prune_ratio", 0.0))
        cfg = from_dict(logged, f"run {trial.run_id}: config.yaml")
        state_dict = _load_state_dict(Path(ckpt_path))
    # The architecture training ended with: factorized and channel-pruned as planned.
    model = build_planned(cfg, num_classes, prune_ratio)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_path}: does not match the trial's config ({exc})") from None
    return model.eval(), cfg, prune_ratio


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix.
        raise CheckpointError(f"{path}: cannot load ({exc})") from None


def find_best(study_name: str, storage_url: str | None, home: Path) -> tuple[TrialRecord, Any]:
    """The study's best feasible trial and its tracker."""
    from sweep.study import read_study  # study imports this module to register models

    _, space, records = read_study(study_name, storage_url, home)
    best = best_trial(records, space.trial_config({}).budget.max_params, space.direction)
    if best is None:
        raise SweepError(f"--study: {study_name}: no complete trial within the budget yet")
    return best, Tracker(tracking_uri(home), study_name)


def export_best(
    study_name: str,
    out: Path,
    storage_url: str | None = None,
    home: Path | None = None,
    data_dir: str | None = None,
    int8: bool = False,
) -> ExportResult:
    """Write the best student to ``out`` and check that it reproduces its accuracy.

    Writes ``student_best.ckpt`` (state_dict), ``student_config.yaml`` (what rebuilds it:
    family, options, and the factorization and pruning that shaped it), ``model_summary.txt``
    (torchinfo at the task's input size) and ``export.json``. With ``int8`` also
    ``student_int8.pt2``: static int8 (:mod:`sweep.quantize`) calibrated on training batches,
    its validation accuracy and sizes next to the float model's in ``export.json``.

    Raises:
        SweepError: no such study, no feasible trial, or the reload check failed.
    """
    home = home or sweep_home()
    best, tracker = find_best(study_name, storage_url, home)
    model, cfg, prune_ratio = load_trial_model(tracker, best)
    if data_dir is not None:
        cfg = replace(cfg, dataset=replace(cfg.dataset, root=data_dir))
    params = count_params(model, cfg.budget.count)
    if params > cfg.budget.max_params:
        raise SweepError(f"trial {best.number}: {params:,} parameters is over the budget")
    # The same data path the trial was evaluated on (decoded cache or PIL), on the CPU.
    data = trial_data(cfg, home, torch.device("cpu"), progress=False)
    reloaded, _ = evaluate(model, data.val, torch.device("cpu"))
    logged = float(best.val_acc or 0.0)
    tolerance = 1.0 / len(data.val.dataset) + 1e-9  # at most one image's difference
    if abs(reloaded - logged) > tolerance:
        raise SweepError(
            f"trial {best.number}: reload check failed: logged val_acc {logged:.4f}, "
            f"reloaded {reloaded:.4f}; the checkpoint does not reproduce its result"
        )
    image_size = cfg.dataset.image_size
    measured: dict[str, Any] = {}
    if int8:
        program, measured = _quantize(model, data, cfg)
    files: dict[str, str | bytes] = {
        "student_config.yaml": yaml.safe_dump(
            {
                "family": cfg.student.family,
                "options": cfg.student.options,
                "num_classes": data.num_classes,
                "class_names": data.class_names,
                "image_size": image_size,
                "resize": cfg.dataset.resize,
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                # sweep.compression.build_planned(cfg, num_classes, prune_ratio) rebuilds it.
                "lowrank_rank_ratio": cfg.lowrank.rank_ratio,
                "prune_ratio": prune_ratio,
                "trial_config": to_dict(cfg),
            },
            sort_keys=False,
        ),
        "model_summary.txt": model_summary(model, image_size),
        "export.json": json.dumps(
            {
                "study": study_name,
                "trial": best.number,
                "run_id": best.run_id,
                "params": params,
                "macs": count_macs(model, image_size),
                "logged_val_acc": logged,
                "reloaded_val_acc": reloaded,
                **measured,
            },
            indent=2,
        ),
    }
    if int8:
        files[INT8_PROGRAM] = program
    _write_atomically(out, files, model.state_dict())
    int8_acc = measured.get("int8_val_acc")
    return ExportResult(out, best.number, params, logged, reloaded, int8_acc)


def _quantize(model: torch.nn.Module, data: Any, cfg: TrialConfig) -> tuple[bytes, dict[str, Any]]:
    """The int8 program's bytes, and its accuracy and sizes next to the float model's."""
    from sweep.quantize import quantize_and_measure, save_quantized

    result, measured = quantize_and_measure(
        model, data, cfg.dataset.image_size, cfg.quantize.calibration_batches
    )
    buffer = io.BytesIO()
    save_quantized(result, buffer)
    return buffer.getvalue(), measured


def _write_atomically(
    out: Path, files: dict[str, str | bytes], state_dict: dict[str, torch.Tensor]
) -> None:
    """Write every file to a temporary sibling folder, then move each into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out: {out}: exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        torch.save(state_dict, tmp / CHECKPOINT)
        for name, content in files.items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / name, mode) as handle:
                handle.write(content)
        out.mkdir(exist_ok=True)
        for path in tmp.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def predict(
    study_name: str,
    data_dir: str,
    out: Path,
    storage_url: str | None = None,
    home: Path | None = None,
) -> int:
    """Write the course's submission CSV (``Id,Category``) for ``DIR/evaluation``.

    Returns:
        The number of rows written.
    """
    home = home or sweep_home()
    best, tracker = find_best(study_name, storage_url, home)
    model, cfg, _ = load_trial_model(tracker, best)
    dataset = replace(cfg.dataset, root=data_dir)
    names = class_names(Path(data_dir).expanduser())
    device = resolve_device(cfg.train.device)
    model = model.to(device)
    rows: list[tuple[str, str]] = []
    with torch.no_grad():
        for images, ids in evaluation_loader(dataset, cfg.train.batch_size, home=home):
            predicted = model(images.to(device)).argmax(dim=1).tolist()
            rows += [(_submission_id(i), names[p]) for i, p in zip(ids, predicted, strict=True)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Category"])
        writer.writerows(rows)
    os.replace(tmp, out)
    return len(rows)


def _submission_id(stem: str) -> str:
    """The course's Id: the file number zero-padded to 4 digits."""
    return f"{int(stem):04d}" if stem.isdigit() else stem
