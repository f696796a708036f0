"""Export the best feasible student, prove it reloads, and write predictions.

Which student: the finalized one once ``sweep finalize`` has completed a training (the best
mean over seeds, its best seed: :func:`sweep.search.final.export_choice`), else the search's
best feasible trial; ``export.json`` and the command say which, and why.

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
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sweep.compress.artifact import EXPORT_CONFIG, EXPORT_WEIGHTS, StudentArtifact
from sweep.config import TrialConfig
from sweep.data import class_names, images_to_label, prediction_loader, resolve_root
from sweep.data.folders import check_decodable
from sweep.data.loaders import IMAGENET_MEAN, IMAGENET_STD
from sweep.data.protocol import TrainData
from sweep.errors import SweepError
from sweep.models.budget import count_macs, count_params, torchsummary_table
from sweep.models.standalone import load_module_state, standalone_source
from sweep.paths import sweep_home
from sweep.search.best import choose_model, load_trial_model
from sweep.teacher.trial_data import trial_data
from sweep.train import cpu_accuracy, evaluate, resolve_device

INT8_PROGRAM = "student_int8.pt2"
STANDALONE = "student.py"  # the architecture in torch alone, for the hand-in
SUMMARY = "summary.txt"  # torchsummary's table, the budget and the margin


@dataclass(frozen=True)
class ExportResult:
    """What ``sweep export`` wrote and measured."""

    out: Path
    trial: int
    params: int
    logged_val_acc: float
    reloaded_val_acc: float
    int8_val_acc: float | None = None  # with ``int8``: the quantized program's accuracy
    stage: str = "search"  # "final" when the model is a finalized one
    reason: str = ""  # which model was taken, and why


def export_best(
    study_name: str,
    out: Path,
    storage_url: str | None = None,
    home: Path | None = None,
    data_dir: str | None = None,
    int8: bool = False,
    force: bool = False,
) -> ExportResult:
    """Write the best student to ``out`` and check that it reproduces its accuracy.

    Writes ``student_best.ckpt`` (state_dict), ``student.py`` (the architecture in torch
    alone; it loads the checkpoint), ``summary.txt`` (torchsummary's table with the budget
    and the margin), ``student_config.yaml`` (what rebuilds it in sweep,
    :class:`~sweep.compress.artifact.StudentArtifact`) and ``export.json``. With ``int8`` also
    ``student_int8.pt2``: static int8 (:mod:`sweep.compress.quantize`) calibrated on training
    batches, its validation accuracy and sizes next to the float model's in ``export.json``.

    ``out`` must be missing or empty unless ``force``, which replaces it whole: the new folder
    is written beside it and swapped in, so no file of an earlier export survives and a
    failure leaves the old folder as it was.

    Raises:
        SweepError: ``out`` holds files (without ``force``) or is a file, no such study, no
            feasible trial, the reload check failed, or ``student.py`` does not reproduce the
            model's outputs.
    """
    _check_out(out, force)
    home = home or sweep_home()
    chosen, tracker = choose_model(study_name, storage_url, home)
    best = chosen.trial
    model, artifact = load_trial_model(tracker, best)
    cfg = artifact.config
    if data_dir is not None:
        cfg = replace(cfg, dataset=replace(cfg.dataset, root=data_dir))
    params = count_params(model, cfg.budget.count)
    if params > cfg.budget.max_params:
        raise SweepError(f"trial {chosen.source}: {params:,} parameters is over the budget")
    # The same data path the trial was evaluated on (decoded cache or PIL), on the CPU.
    data = trial_data(cfg, home, torch.device("cpu"), progress=False)
    reloaded, _ = evaluate(model, data.val, torch.device("cpu"))
    logged = float(best.val_acc or 0.0)
    tolerance = 1.0 / len(data.val.dataset) + 1e-9  # at most one image's difference
    if abs(reloaded - logged) > tolerance:
        raise SweepError(
            f"trial {chosen.source}: reload check failed: logged val_acc {logged:.4f}, "
            f"reloaded {reloaded:.4f}; the checkpoint does not reproduce its result"
        )
    image_size = cfg.dataset.image_size
    measured: dict[str, Any] = {}
    if int8:
        program, measured = _quantize(model, data, cfg)
    artifact = replace(
        artifact, config=cfg, state_dict=model.state_dict(), class_names=data.class_names
    )
    report = {
        "study": study_name,
        # The search trial it comes from, and the run whose checkpoint this is (a final
        # run's own when the model was finalized).
        "source_trial": chosen.source,
        "run_id": best.run_id,
        **chosen.facts,
        "choice": chosen.reason,
        "family": cfg.student.family,
        "params": params,
        "max_params": cfg.budget.max_params,
        "macs": count_macs(model, image_size),
        "image_size": image_size,
        "logged_val_acc": logged,
        "reloaded_val_acc": reloaded,
        **measured,
    }
    files = _hand_in(model, artifact, report)
    if int8:
        files[INT8_PROGRAM] = program
    _write_folder(out, files, artifact)
    int8_acc = measured.get("int8_val_acc")
    return ExportResult(
        out, chosen.source, params, logged, reloaded, int8_acc, chosen.stage, chosen.reason
    )


def _hand_in(
    model: torch.nn.Module, artifact: StudentArtifact, report: dict[str, Any]
) -> dict[str, str | bytes]:
    """``student.py``, ``summary.txt`` and ``export.json`` (the checkpoint is saved apart)."""
    cfg = artifact.config
    trial = report["source_trial"]
    title = (
        f"{cfg.student.family} student of study {report['study']}, trial {trial}: "
        f"{report['params']:,} parameters (budget {cfg.budget.max_params:,}), "
        f"val_acc {report['reloaded_val_acc']:.4f}."
    )
    return {
        STANDALONE: _standalone(model, artifact, title),
        SUMMARY: torchsummary_table(model, cfg.dataset.image_size, cfg.budget.max_params),
        "export.json": json.dumps(report, indent=2),
    }


def _check_out(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is a file, or a folder with files in it unless ``force``."""
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out: {out}: exists and is not a folder")
    if out.is_dir() and not force:
        held = sorted(p.name for p in out.iterdir())
        if held:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise SweepError(
                f"--out: {out}: is not empty ({shown}); pass --force to replace it whole"
            )


def _standalone(model: torch.nn.Module, artifact: StudentArtifact, title: str) -> str:
    """``student.py``'s text, checked: it must give the model's logits on random images."""
    cfg = artifact.config
    source = standalone_source(
        model,
        title=title,
        image_size=cfg.dataset.image_size,
        resize=cfg.dataset.resize,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=list(artifact.class_names or []),
        weights=EXPORT_WEIGHTS,
    )
    rebuilt = load_module_state(source, model.state_dict())
    size = cfg.dataset.image_size
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        images = torch.rand(2, 3, size, size)
        expected, got = model.eval()(images), rebuilt(images)
    if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
        raise SweepError(f"{STANDALONE}: does not reproduce the model's outputs")
    return source


def _quantize(
    model: torch.nn.Module, data: TrainData, cfg: TrialConfig
) -> tuple[bytes, dict[str, Any]]:
    """The int8 program's bytes, and its accuracy and sizes next to the float model's."""
    from sweep.compress.quantize import quantize_and_measure, save_quantized

    result, measured = quantize_and_measure(
        model, data, cfg.dataset.image_size, cfg.quantize.calibration_batches, cpu_accuracy
    )
    buffer = io.BytesIO()
    save_quantized(result, buffer)
    return buffer.getvalue(), measured


def _write_folder(out: Path, files: dict[str, str | bytes], student: StudentArtifact) -> None:
    """Write every file to a temporary sibling folder, then swap it in for ``out``.

    An existing ``out`` is moved aside first and removed only once the new folder is in
    place; if the swap fails it is moved back.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}-{os.getpid()}-{secrets.token_hex(4)}")
    old = tmp.with_name(f"{tmp.name}-old")
    tmp.mkdir()  # with the user's umask, as the final folder should have
    try:
        student.save(tmp, EXPORT_CONFIG, EXPORT_WEIGHTS)
        for name, content in files.items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / name, mode) as handle:
                handle.write(content)
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old.exists():
                old.rename(out)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Predictions:
    """What ``sweep predict`` wrote, and with which model."""

    rows: int
    folder: Path  # the images it labeled
    reason: str  # which model, and why (as ``sweep export`` says it)


def predict(
    study_name: str,
    data_dir: str,
    out: Path,
    storage_url: str | None = None,
    home: Path | None = None,
) -> Predictions:
    """Write the course's submission CSV (``Id,Category``) for a folder of images: ``DIR``
    itself, or ``DIR/evaluation`` when ``DIR`` is a data root.

    The model is the one ``sweep export`` takes; its class names come with it (from its
    run's config; a run from before they were kept takes them from its study's data).

    Raises:
        SweepError: no such study or model, or no decodable images in the folder.
    """
    home = home or sweep_home()
    folder, images = images_to_label(Path(data_dir).expanduser())
    check_decodable(images, folder)
    chosen, tracker = choose_model(study_name, storage_url, home)
    model, artifact = load_trial_model(tracker, chosen.trial)
    cfg = artifact.config
    names = list(artifact.class_names or class_names(resolve_root(cfg.dataset, home)))
    device = resolve_device(cfg.train.device)
    model = model.to(device)
    rows: list[tuple[str, str]] = []
    with torch.no_grad():
        for batch, ids in prediction_loader(images, cfg.dataset, cfg.train.batch_size):
            predicted = model(batch.to(device)).argmax(dim=1).tolist()
            rows += [(_submission_id(i), names[p]) for i, p in zip(ids, predicted, strict=True)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Category"])
        writer.writerows(rows)
    os.replace(tmp, out)
    return Predictions(len(rows), folder, chosen.reason)


def _submission_id(stem: str) -> str:
    """The course's Id: the file number zero-padded to 4 digits."""
    return f"{int(stem):04d}" if stem.isdigit() else stem
