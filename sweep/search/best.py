"""A study's best student: which trial it is, and its trained model from the trial's run.

``sweep export``, ``sweep predict`` and the model registry read the best feasible trial here.
The trial's MLflow run holds its :class:`~sweep.models.artifact.StudentArtifact`
(``config.yaml`` + ``checkpoint/student.ckpt``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
import torch
from filelock import FileLock

from sweep.errors import CheckpointError, SweepError
from sweep.models.artifact import RUN_CONFIG, RUN_WEIGHTS, StudentArtifact
from sweep.paths import tracking_uri
from sweep.search.pareto import TrialRecord, best_trial
from sweep.search.study import read_study
from sweep.track.tracker import Tracker

REGISTERED_ATTR = "registered_trial"


def find_best(study_name: str, storage_url: str | None, home: Path) -> tuple[TrialRecord, Tracker]:
    """The study's best feasible trial and its tracker.

    Raises:
        SweepError: no such study, or no complete trial within the budget yet.
    """
    _, space, records = read_study(study_name, storage_url, home)
    best = best_trial(records, space.defaults.budget.max_params, space.direction)
    if best is None:
        raise SweepError(f"--study: {study_name}: no complete trial within the budget yet")
    return best, Tracker(tracking_uri(home), study_name)


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
    if study.user_attrs.get(REGISTERED_ATTR) == best.number:
        return
    with FileLock(str(lock)):
        if not tracker.registered_versions(study.study_name, best.run_id):
            model, artifact = load_trial_model(tracker, best)
            size = artifact.config.dataset.image_size
            tags = {
                "val_acc": f"{best.val_acc:.4f}",
                "params": str(best.params),
                "macs": str(best.macs),
                "family": str(best.family),
                "study": study.study_name,
                "trial": str(best.number),
                "stage": "search",
            }
            description = (
                f"Trial {best.number} of study {study.study_name!r}: {artifact.family}, "
                f"{best.params:,} parameters (budget {artifact.config.budget.max_params:,}), "
                f"val_acc {best.val_acc:.4f}, {best.macs:,} MACs at {size}x{size}. Input: "
                f"float32 [N, 3, {size}, {size}] RGB normalized by ImageNet mean and std; "
                f"output: logits over {artifact.num_classes} classes. Loads with "
                f"mlflow.pytorch.load_model where sweep is installed; `sweep export` writes a "
                f"torch-only student.py."
            )
            tracker.register_model(
                best.run_id,
                model,
                study.study_name,
                input_shape=(3, size, size),
                tags=tags,
                description=description,
            )
        study.set_user_attr(REGISTERED_ATTR, best.number)
