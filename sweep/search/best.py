"""A study's best student: which trial it is, and its trained model from the trial's run.

``sweep export``, ``sweep predict`` and the model registry read the best feasible trial here.
The trial's MLflow run holds its :class:`~sweep.compress.artifact.StudentArtifact`
(``config.yaml`` + ``checkpoint/student.ckpt``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from filelock import FileLock

from sweep.compress.artifact import RUN_CONFIG, RUN_WEIGHTS, StudentArtifact
from sweep.errors import CheckpointError, SweepError
from sweep.paths import tracking_uri
from sweep.records import FinalResult, TrialRecord
from sweep.search.fidelity import describe
from sweep.search.final import export_choice, read_final
from sweep.search.pareto import best_trial
from sweep.search.space import experiment_of
from sweep.search.study import read_study
from sweep.track.tracker import Tracker

REGISTERED_ATTR = "registered_trial"


@dataclass(frozen=True)
class Chosen:
    """The model ``sweep export`` and ``sweep predict`` take from a study, and why."""

    trial: TrialRecord  # the training whose run holds the model (a final seed's, if any)
    source: int  # the search trial whose architecture it is
    stage: str  # "final" or "search"
    reason: str  # which it took, and why, in words
    facts: dict[str, Any]  # the stage's figures for export.json (mean, spread, seed...)


def choose_model(study_name: str, storage_url: str | None, home: Path) -> tuple[Chosen, Tracker]:
    """The finalized model when ``sweep finalize`` has completed any training, else the
    search's best feasible trial.

    Raises:
        SweepError: no such study, or no complete trial within the budget yet.
    """
    study, space, records = read_study(study_name, storage_url, home)
    tracker = Tracker(tracking_uri(home), study_name)
    final = read_final(study, space, records)
    if final is not None and final.results:
        result, seed, run, reason = export_choice(final.results)
        facts = {
            "stage": "final",
            "source_trial": result.source.number,
            "seed": seed,
            "seeds": len(result.runs),
            "final_val_acc_mean": result.mean,
            "final_val_acc_std": result.std,
            "proxy_val_acc": result.source.val_acc,
            "fidelity": final.fidelity,
        }
        return Chosen(run, result.source.number, "final", reason, facts), tracker
    best = best_trial(records, space.defaults.budget.max_params, space.direction)
    if best is None:
        raise SweepError(f"--study: {study_name}: no complete trial within the budget yet")
    reason = (
        f"trial {best.number} (search stage, {describe(space.defaults)}): the search's best; "
        f"`sweep finalize --study {study_name}` trains the front properly, with several seeds"
    )
    facts = {"stage": "search", "fidelity": describe(space.defaults)}
    return Chosen(best, best.number, "search", reason, facts), tracker


def load_trial_student(tracker: Tracker, trial: TrialRecord) -> StudentArtifact:
    """A trial's trained student, read from its MLflow run (config + weights).

    Raises:
        SweepError: the trial has no run.
        CheckpointError, ConfigError: the run's files are unreadable.
    """
    if trial.run_id is None:
        raise SweepError(f"trial {trial.number}: has no MLflow run")
    with tempfile.TemporaryDirectory() as tmp:
        config = tracker.client.download_artifacts(trial.run_id, RUN_CONFIG, tmp)
        weights = tracker.client.download_artifacts(trial.run_id, RUN_WEIGHTS, tmp)
        return StudentArtifact.load(Path(config), Path(weights))


def load_trial_model(
    tracker: Tracker, trial: TrialRecord
) -> tuple[torch.nn.Module, StudentArtifact]:
    """A trial's trained student, built and holding its weights, in eval mode.

    Raises:
        CheckpointError: the run's checkpoint does not fit the run's config.
    """
    artifact = load_trial_student(tracker, trial)
    try:
        return artifact.build(f"run {trial.run_id}: {RUN_CONFIG}"), artifact
    except CheckpointError as exc:
        raise CheckpointError(f"trial {trial.number}: {RUN_WEIGHTS} {exc}") from None


def register_best(study: optuna.Study, tracker: Tracker, best: TrialRecord, lock: Path) -> None:
    """Register the best feasible model in the MLflow model registry (alias ``best``), once.

    Several processes may close the same study at once (separate ``sweep run``s, hosts):
    under the study's host lock, and only if the registry holds no version of that run yet,
    so each distinct best trial gets one version whoever registers it.
    """
    tags = {"val_acc": f"{best.val_acc:.4f}", "trial": str(best.number), "stage": "search"}
    headline = f"Trial {best.number} of study {study.study_name!r}"
    _register(study, study.study_name, tracker, best, tags, headline, lock)


def register_final(
    study: optuna.Study,
    tracker: Tracker,
    result: FinalResult,
    seed: int,
    run: TrialRecord,
    reason: str,
    lock: Path,
) -> None:
    """Register a finalized model (the best mean's best seed, :func:`export_choice`) as a
    new version of the search study's model, so alias ``best`` moves to it."""
    name = experiment_of(study.study_name)
    tags = {
        "val_acc": f"{run.val_acc:.4f}",
        "val_acc_mean": f"{result.mean:.4f}",
        "val_acc_std": f"{result.std:.4f}" if result.std is not None else "-",
        "seeds": str(len(result.runs)),
        "trial": str(result.source.number),
        "seed": str(seed),
        "stage": "final",
    }
    headline = f"Finalized trial {result.source.number} of study {name!r}, seed {seed} ({reason})"
    _register(study, name, tracker, run, tags, headline, lock)


def _register(
    study: optuna.Study,
    name: str,
    tracker: Tracker,
    chosen: TrialRecord,
    stage_tags: dict[str, str],
    headline: str,
    lock: Path,
) -> None:
    """Register ``chosen``'s model as a version of ``name`` unless its run has one already."""
    if study.user_attrs.get(REGISTERED_ATTR) == chosen.number:
        return
    with FileLock(str(lock)):
        if not tracker.registered_versions(name, chosen.run_id):
            model, artifact = load_trial_model(tracker, chosen)
            size = artifact.config.dataset.image_size
            tags = {
                "params": str(chosen.params),
                "macs": str(chosen.macs),
                "family": str(chosen.family),
                "study": name,
                **stage_tags,
            }
            description = (
                f"{headline}: {artifact.family}, "
                f"{chosen.params:,} parameters (budget {artifact.config.budget.max_params:,}), "
                f"val_acc {chosen.val_acc:.4f}, {chosen.macs:,} MACs at {size}x{size}. Input: "
                f"float32 [N, 3, {size}, {size}] RGB normalized by ImageNet mean and std; "
                f"output: logits over {artifact.num_classes} classes. Loads with "
                f"mlflow.pytorch.load_model where sweep is installed; `sweep export` writes a "
                f"torch-only student.py."
            )
            tracker.register_model(
                chosen.run_id,
                model,
                name,
                input_shape=(3, size, size),
                tags=tags,
                description=description,
            )
        study.set_user_attr(REGISTERED_ATTR, chosen.number)
