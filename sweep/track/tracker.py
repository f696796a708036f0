"""The MLflow layout: one experiment per study, a parent run, one nested child per trial.

Written against ``MlflowClient`` directly (optuna-integration's MLflow callback is deprecated
and logs flat runs with no parent). The parent run's id lives in the study's user attrs so
every worker, on every host, nests its children under the same parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import torch
import yaml
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag

from sweep import interrupts
from sweep.errors import SweepError
from sweep.records import TrialRecord
from sweep.track.held_client import HeldClient
from sweep.track.views import VIEW_PREFIX, VIEWS

if TYPE_CHECKING:  # a study's attributes and a figure are read, neither library loaded here
    from matplotlib.figure import Figure
    from optuna import Study

PARENT_ATTR = "mlflow_parent_run_id"
# MLflow 3's UI opens an experiment on the view this tag names; without it, an experiment
# with no traces opens on the GenAI overview instead of the runs table.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as markdown
FRONT_ATTR = "pareto_trials"
# How long a process that just published a new parent run waits before reading the study's
# attribute back: long enough for a rival that read "no parent" at the same moment to have
# written its own, so both see the same last writer.
PARENT_SETTLE_SECONDS = 0.5
# MLflow's status for each trial state: an early-stopped or never-trained trial was killed
# before the end; the ``state`` tag tells which.
RUN_STATUS = {
    "complete": "FINISHED",
    "early-stopped": "KILLED",
    "infeasible": "KILLED",
    "duplicate": "KILLED",
    "failed": "FAILED",
}
EXPERIMENT_TAGS = {EXPERIMENT_KIND: MODEL_TRAINING}


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of an embedded SQLite store; None for a tracking server."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def _beside_store(tracking_uri: str) -> str | None:
    """An SQLite store's artifacts go beside its file, never into the current folder
    (MLflow's default, ``./mlruns``); a server decides for itself (None)."""
    database = sqlite_file(tracking_uri)
    return None if database is None else (database.resolve().parent / "mlartifacts").as_uri()


class Tracker:
    """Logs a study to MLflow.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...``, ``http://host:5000``).
        experiment_name: the study name.
        artifact_location: where a new experiment keeps artifacts (embedded store only;
            a tracking server decides itself when this is None).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        artifact_location: str | None = None,
        stage: str = "search",
    ) -> None:
        self.tracking_uri = tracking_uri
        # Which trials' runs this tracker starts and ends: a search study's, or its final
        # study's (``sweep finalize``), which share the experiment and the parent run.
        self.stage = stage
        check_reachable(tracking_uri)
        try:
            # A fresh embedded store is created (tables, migrations) by whichever process
            # opens it first; two at once collide ("duplicate column name"). So are an
            # experiment's: the lock makes "look up, else create" one step on this host.
            # A Ctrl-C mid-migration would leave a store no later run can open: held back.
            with _store_lock(tracking_uri), interrupts.deferred():
                self.client = HeldClient(MlflowClient(tracking_uri=tracking_uri))
                experiment = self.client.get_experiment_by_name(experiment_name)
                if experiment is None:
                    experiment_id = self.client.create_experiment(
                        experiment_name,
                        artifact_location=artifact_location or _beside_store(tracking_uri),
                        tags=EXPERIMENT_TAGS,
                    )
                else:
                    experiment_id = experiment.experiment_id
                    for key, value in EXPERIMENT_TAGS.items():  # made by an older sweep
                        if experiment.tags.get(key) != value:
                            self.client.set_experiment_tag(experiment_id, key, value)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for "unreachable".
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SweepError(
                f"MLFLOW_TRACKING_URI: {tracking_uri}: cannot use it ({reason})"
            ) from None
        self.experiment_id = experiment_id
        self.experiment_name = experiment_name
        # Called as (trial number, run id) once a trial's run exists: a worker records it
        # with the trial it holds, so whoever finds the worker dead can end the run.
        self.on_trial_run: Callable[[int, str], None] | None = None

    def ensure_parent(self, study: Study, description: Mapping[str, Any]) -> str:
        """Return the study's parent run id, creating the run on first use.

        Two processes may create the parent at once (two hosts starting the same study).
        Each publishes its run in the study's user attrs, waits, reads the attribute back
        and deletes its own run when another one won, so the study keeps one parent. Callers
        on one host also hold the study's lock (see :func:`sweep.paths.study_lock_path`).

        Args:
            study: the Optuna study (its user attrs hold the parent id).
            description: settings logged as the parent's params (sampler, budget, ...).
        """
        self._publish_runs_view()
        run_id = self._existing_parent(study)
        if run_id is not None:
            return run_id
        tags = {"sweep.role": "study", "optuna.study": study.study_name}
        # Created RUNNING by MLflow; SCHEDULED until a sweep runs it, so a Ctrl-C before
        # then leaves nothing RUNNING.
        with interrupts.deferred():
            mine = self.start_run(study.study_name, description, tags)
            self.set_status(mine, "SCHEDULED")
        if self._existing_parent(study) is None:
            study.set_user_attr(PARENT_ATTR, mine)
            time.sleep(PARENT_SETTLE_SECONDS)
        winner = self._existing_parent(study)
        if winner is None:  # our write was the only one, yet unreadable: keep ours
            study.set_user_attr(PARENT_ATTR, mine)
            return mine
        if winner != mine:
            self.client.delete_run(mine)
        return winner

    def _publish_runs_view(self) -> None:
        """Keep the study's views on its experiment (opened by `sweep ui`'s links).

        Written only when missing or different, under the store's lock: MLflow inserts an
        experiment tag after looking for it, so two processes writing it at once collide.
        """
        with _store_lock(self.tracking_uri):
            stored = self.client.get_experiment(self.experiment_id).tags
            for key, content in VIEWS.items():
                tag, view = f"{VIEW_PREFIX}{key}", json.dumps(content)
                if stored.get(tag) == view:
                    continue
                try:
                    self.client.set_experiment_tag(self.experiment_id, tag, view)
                except mlflow.exceptions.MlflowException:
                    # Another host wrote it at the same moment (a server, no shared lock).
                    if self.client.get_experiment(self.experiment_id).tags.get(tag) != view:
                        raise

    def parent_of(self, study: Study) -> str:
        """The parent run of a study that ``sweep run`` started (workers only read it).

        Raises:
            SweepError: the study has no parent run in this tracking store.
        """
        run_id = self._existing_parent(study)
        if run_id is None:
            raise SweepError(
                f"MLFLOW_TRACKING_URI: {self.tracking_uri}: holds no parent run of study "
                f"{study.study_name!r}; start the study with `sweep run` and point every "
                f"worker at the same tracking server"
            )
        return run_id

    def _existing_parent(self, study: Study) -> str | None:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is None:
            return None
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - the store was wiped: the id names nothing.
            return None
        return None if run.info.lifecycle_stage == "deleted" else run_id

    def start_run(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create a run with params and tags; returns its id."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def start_trial(
        self,
        parent_id: str,
        number: int,
        params: Mapping[str, Any],
        extra_tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the child run of a trial, with its flattened settings as params.

        Search runs are named ``trial-0007``; final ones ``final-0007-seed1`` after their
        source trial and seed (``extra_tags`` ``source_trial`` and ``seed``).
        """
        tags = {
            "mlflow.parentRunId": parent_id,
            "optuna.trial": str(number),
            "state": "running",
            "sweep.role": "trial",
            "stage": self.stage,
            # Which process ran it: workers on several hosts share one parent run.
            "sweep.worker": f"{socket.gethostname()}:{os.getpid()}",
            **(extra_tags or {}),
        }
        name = f"trial-{number:04d}"
        if "source_trial" in tags:
            name = f"final-{int(tags['source_trial']):04d}-seed{tags.get('seed', 0)}"
        run_id = self.start_run(name, params, tags)
        if self.on_trial_run is not None:
            self.on_trial_run(number, run_id)
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log a dict of metrics at one step (one epoch)."""
        timestamp = int(mlflow.utils.time.get_current_time_millis())
        batch = [Metric(k, float(v), timestamp, step) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch, synchronous=True)

    def describe(self, run_id: str, note: str) -> None:
        """Set a run's description (markdown, ``mlflow.note.content``): its page shows it first."""
        self.client.set_tag(run_id, NOTE_TAG, note)

    def log_files(self, run_id: str, files: Mapping[str, str], folder: str = "") -> None:
        """Write text as artifact files ``{name: content}`` of a run."""
        for name, content in files.items():
            self.client.log_text(run_id, content, f"{folder}/{name}" if folder else name)

    def log_figure(self, run_id: str, figure: Figure, name: str) -> None:
        """Log a matplotlib figure as an image artifact ``name`` (replacing one of that name)."""
        self.client.log_figure(run_id, figure, name)

    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        """Log a local file as an artifact of a run."""
        self.client.log_artifact(run_id, str(path), folder)

    def log_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Log the resolved trial config as ``config.yaml``, in the order it was given.

        (``log_dict`` would sort the keys and write tuples as Python-only YAML tags.)
        """
        self.client.log_text(run_id, yaml.safe_dump(dict(config), sort_keys=False), "config.yaml")

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status: SCHEDULED before a sweep first runs it, RUNNING while one
        does, then how it ended."""
        if status in ("SCHEDULED", "RUNNING"):
            self.client.update_run(run_id, status=status)
        else:
            self.client.set_terminated(run_id, status=status)

    def finish_trial(self, run_id: str, state: str) -> None:
        """Tag the trial's state and end its run with the matching MLflow status.

        A complete trial is tagged ``pareto=false`` here, before the study can see it
        complete; the front's refresh turns it ``true`` when it joins, so every complete
        child carries the tag (``tags.pareto = 'false'`` finds the rest).
        """
        tags = [RunTag("state", state)]
        if state == "complete":
            tags.append(RunTag("pareto", "false"))
        self.client.log_batch(run_id, tags=tags, synchronous=True)
        self.client.set_terminated(run_id, status=RUN_STATUS[state])

    def running_trial_runs(self, parent_id: str) -> list[Any]:
        """The study's trial runs whose status is still RUNNING."""
        where = f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
        runs = self.client.search_runs([self.experiment_id], filter_string=where)
        return [run for run in runs if self._mine(run)]

    def _mine(self, run: Run) -> bool:
        """Whether a trial run belongs to this tracker's stage (runs before stages: search)."""
        return run.data.tags.get("stage", "search") == self.stage

    def fail_running_trial(self, parent_id: str, number: int, run_id: str | None) -> bool:
        """End a trial's child run as FAILED if it is still RUNNING (its worker died).

        Args:
            parent_id: the study's parent run.
            number: the trial number (found by tag when the run id was never recorded).
            run_id: the child run, when known.

        Returns:
            Whether a running run was ended.
        """
        if run_id is None:
            where = (
                f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`optuna.trial` = "
                f"'{number}' and attributes.status = 'RUNNING'"
            )
            runs = self.client.search_runs([self.experiment_id], filter_string=where)
            runs = [run for run in runs if self._mine(run)]
            run_id = runs[0].info.run_id if runs else None
        if run_id is None or self.client.get_run(run_id).info.status != "RUNNING":
            return False
        self.finish_trial(run_id, "failed")
        return True

    def update_front(
        self,
        parent_id: str,
        front: Sequence[TrialRecord],
        previous: Sequence[int],
        records_by_number: Mapping[int, TrialRecord],
        table_csv: str,
        figure: Figure,
    ) -> list[int]:
        """Refresh the parent's ``pareto.csv`` and plot, and the children's ``pareto`` tags.

        Args:
            parent_id: the parent run.
            front: the current front.
            previous: trial numbers on the front as last recorded.
            records_by_number: every trial, to find the child run of a trial number.
            table_csv: the front as CSV text.
            figure: a matplotlib figure of accuracy vs parameters.

        Returns:
            The trial numbers now on the front.
        """
        now = [r.number for r in front]
        for number in set(now) ^ set(previous):
            trial = records_by_number.get(number)
            if trial is not None and trial.run_id is not None:
                self.client.set_tag(trial.run_id, "pareto", str(number in now).lower())
        self.log_files(parent_id, {"pareto.csv": table_csv})
        self.log_figure(parent_id, figure, "pareto.png")
        return now

    def publish_summary(
        self, parent_id: str, metrics: Mapping[str, float], note: str, step: int
    ) -> None:
        """Log the study's headline on the parent run: metrics at ``step`` (finished trials)
        and the description (``mlflow.note.content``) the run page shows first."""
        timestamp = int(mlflow.utils.time.get_current_time_millis())
        self.client.log_batch(
            parent_id,
            metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()],
            tags=[RunTag(NOTE_TAG, note)],
            synchronous=True,
        )

    def registered_versions(self, name: str, run_id: str | None) -> list[str]:
        """The registry's versions of model ``name`` logged from run ``run_id``."""
        where = f"name = '{name}' and run_id = '{run_id}'"
        return [v.version for v in self.client.search_model_versions(where)]

    def register_model(
        self,
        run_id: str,
        model: torch.nn.Module,
        name: str,
        *,
        input_shape: Sequence[int],
        tags: Mapping[str, str],
        description: str,
    ) -> str:
        """Register ``model`` as a new version of ``name`` (alias ``best``) from its run.

        The model is saved locally and uploaded into the run's artifacts (``model/``): the
        run is never reopened, so its status, start and end stay those of its training.

        Args:
            run_id: the trial's run, the version's source.
            model: the trained student (pickled: it loads where sweep is installed).
            name: the registered model (the study's name).
            input_shape: one input's shape ``(3, S, S)``: the signature takes ``[-1, 3, S, S]``
                float32 images and gives ``[-1, classes]`` logits.
            tags: the version's tags (val_acc, params, macs, study, trial...).
            description: the version's description.

        Returns:
            The new version's number.
        """
        from mlflow.models import infer_signature

        # MLflow's own inference from one example: a batch of any size ([-1, 3, S, S] float32
        # images in, [-1, classes] logits out).
        example = torch.zeros(1, *input_shape)
        with torch.no_grad():
            logits = model(example)
        signature = infer_signature(example.numpy(), logits.numpy())
        # We chose pickle on purpose (below); MLflow warns about it on every call.
        pytorch_log = logging.getLogger("mlflow.pytorch")
        level = pytorch_log.level
        pytorch_log.setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                mlflow.pytorch.save_model(
                    model,
                    Path(tmp) / "model",
                    signature=signature,
                    # Inferring requirements imports and inspects the environment: slow and
                    # unneeded, since the model rebuilds from the sweep package.
                    pip_requirements=["torch", "torchvision", "sweep"],
                    # A pickled module needs only the sweep package to load ("pt2" would
                    # need an example input and a traced graph).
                    serialization_format="pickle",
                )
            finally:
                pytorch_log.setLevel(level)
            self.client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")
        try:
            self.client.create_registered_model(
                name, description=f"The best feasible student of sweep study {name!r}."
            )
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        version = self.client.create_model_version(
            name, source, run_id=run_id, tags=dict(tags), description=description
        ).version
        self.client.set_registered_model_alias(name, "best", str(version))
        return str(version)

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        # log_batch sends at most 100 params a request itself, and MLflow cuts values
        # over its 6,000-character limit (with a warning).
        items = [Param(str(k), "" if v is None else str(v)) for k, v in params.items()]
        self.client.log_batch(run_id, params=items, synchronous=True)


def _store_lock(tracking_uri: str) -> contextlib.AbstractContextManager[object]:
    """A file lock next to an embedded SQLite store; nothing for a tracking server."""
    database = sqlite_file(tracking_uri)
    if database is None:
        return contextlib.nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".lock")


def check_reachable(tracking_uri: str) -> None:
    """Fail fast on a tracking server that does not answer.

    MLflow's own client retries a dead server with backoff for minutes (right for a short
    outage mid-run, wrong at start): one quick probe of ``/health`` first. Local stores
    (``sqlite:///...``) pass.

    Raises:
        SweepError: the server does not answer.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise SweepError(
            f"MLFLOW_TRACKING_URI: {tracking_uri}: cannot use it (no answer: {reason})"
        ) from None
