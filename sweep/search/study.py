"""Running a study: open or resume it, run trials until enough finish, keep the front fresh.

Re-running the same command continues the study: trials already finished count toward
``--trials``, the MLflow parent is found again through the study's user attrs, and nothing
starts over. Over-budget proposals do not count, but a study whose sampler keeps proposing
only over-budget models stops with a message instead of looping.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pandas as pd
from filelock import FileLock
from optuna.storages import BaseStorage

from sweep.config import flatten
from sweep.errors import SweepError
from sweep.paths import (
    artifact_location,
    default_storage,
    study_lock_path,
    sweep_home,
    tracking_uri,
)
from sweep.search.fidelity import describe
from sweep.search.final import STAGE_ATTR, FinalReport, pair_of, read_final, trial_label
from sweep.search.pareto import (
    TrialRecord,
    best_trial,
    count_states,
    infeasible_streak,
    pareto_front,
    record,
)
from sweep.search.preflight import preflight
from sweep.search.samplers import make_pruner, make_sampler
from sweep.search.space import SearchSpace, apply_override, experiment_of, parse_space
from sweep.search.storage import StaleTrialCallback, open_storage, study_names
from sweep.track.dashboard import upload_front
from sweep.track.plots import front_figure
from sweep.track.summary import final_note, front_note, headline_metrics
from sweep.track.tracker import FRONT_ATTR, Tracker, check_reachable

MAX_FAILED_STREAK = 5
SPACE_ATTR = "space"
# What `sweep run` asked for, so `sweep worker` on another host knows when to stop, and how
# often a trial whose worker died is tried again.
TARGET_ATTR = "target_trials"
MAX_RETRIES_ATTR = "max_retries"
# How many `sweep run` processes have opened the study: each after the first draws its
# proposals from a seed of its own (each trial's ``sampler_seed`` says which).
PROCESSES_ATTR = "processes"


@dataclass(frozen=True)
class SweepSummary:
    """What a finished ``sweep run`` reports."""

    study_name: str
    finished: int
    best: TrialRecord | None
    front: list[TrialRecord]
    parent_run_id: str


@dataclass(frozen=True)
class SweepSession:
    """A study opened by ``sweep run``: everything its trials, or its workers, need."""

    space: SearchSpace
    trials: int
    home: Path
    storage_url: str
    storage: BaseStorage
    study: optuna.Study
    tracker: Tracker
    parent_id: str
    num_classes: int
    max_retries: int


@dataclass(frozen=True)
class StudyPlace:
    """Where a study is kept: sweep's home folder and the Optuna storage (URL and open)."""

    home: Path
    storage_url: str
    storage: BaseStorage


def session_of(
    space: SearchSpace,
    place: StudyPlace,
    tracker: Tracker,
    parent_id: str,
    num_classes: int,
) -> SweepSession:
    """Open the space's study for trials, as its opener left it in the storage.

    The one place a :class:`SweepSession` is built (``sweep run``, ``sweep finalize`` and
    ``sweep worker`` prepare the study first, each in its own way): the target and the retry
    limit are the study's own attributes, and its sampler is seeded by ``space``'s seed.
    """
    study = open_study(space.study_name, place.storage, space, num_classes)
    return SweepSession(
        space,
        int(study.user_attrs[TARGET_ATTR]),
        place.home,
        place.storage_url,
        place.storage,
        study,
        tracker,
        parent_id,
        num_classes,
        int(study.user_attrs[MAX_RETRIES_ATTR]),
    )


def load_records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of a study as a TrialRecord, read from the storage."""
    return [record(t) for t in study.get_trials(deepcopy=False)]


def open_study(
    study_name: str,
    storage: BaseStorage,
    space: SearchSpace | None = None,
    num_classes: int | None = None,
) -> optuna.Study:
    """Create or load a study; without a space the study must exist already.

    The sampler is seeded with the space's seed as it is (see :func:`process_seed`). With
    ``num_classes`` it screens its proposals against the budget.
    """
    if space is None:
        if study_name not in study_names(storage):
            known = ", ".join(study_names(storage)) or "none"
            raise SweepError(f"--study: no study named {study_name!r} (studies: {known})")
        return optuna.load_study(study_name=study_name, storage=storage)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=space.direction,
        sampler=make_sampler(space, num_classes),
        pruner=make_pruner(space),
        load_if_exists=True,
    )
    if study.metric_names != [space.objective]:  # optuna-dashboard names the objective by it
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([space.objective])
    return study


# Far apart, so one process's resumes (seed + trials held) do not reach the next one's seeds.
_PROCESS_STRIDE = 1_000_003


def process_seed(space: SearchSpace, storage: BaseStorage, process: int = 0) -> int | None:
    """The sampler seed of the ``process``-th process to open the study (None: unseeded).

    A sampler created again with the same seed replays the same random sequence (Optuna
    keeps no sampler state in the storage), so the seed moves on by the trials the study
    already holds, and by a stride per process that opened it before. From scratch the first
    process's seed is the space's, so the same command proposes the same trials; each resume
    starts where the study stands; processes opened together draw apart.
    """
    seed = space.sampler.get("seed")
    if seed is None:
        return None
    try:
        study_id = storage.get_study_id_from_name(space.study_name)
    except KeyError:  # a new study: the space's own seed
        return int(seed) + _PROCESS_STRIDE * process
    held = len(storage.get_all_trials(study_id, deepcopy=False))
    return (int(seed) + held + _PROCESS_STRIDE * process) % 2**31


def with_seed(space: SearchSpace, seed: int | None) -> SearchSpace:
    """The space with its sampler seeded by ``seed`` (unchanged when None)."""
    return space if seed is None else replace(space, sampler={**space.sampler, "seed": seed})


def front_table(front: list[TrialRecord]) -> pd.DataFrame:
    """The front as a table (``pareto.csv``): one row per trial, fewest parameters first."""
    fields = {"trial": "number", "val_acc": "val_acc", "params": "params", "macs": "macs"}
    fields.update({"family": "family", "run_id": "run_id"})
    rows = [[getattr(r, name) for name in fields.values()] for r in front]
    return pd.DataFrame(rows, columns=list(fields))


def refresh_front(
    study: optuna.Study, tracker: Tracker, parent_id: str, space: SearchSpace
) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """Recompute the front from the storage and publish it, with the study's headline
    (best feasible trial, trials by state, the front as a table), to the MLflow parent run.

    Returns:
        Every trial as read from the storage, and the front.
    """
    max_params = space.defaults.budget.max_params
    records = load_records(study)
    front = pareto_front(records, max_params)
    previous = study.user_attrs.get(FRONT_ATTR, [])
    final = read_final(study, space, records)
    finalized = final.results if final is not None else ()
    figure = front_figure(records, front, max_params, study.study_name, finalized)
    now = tracker.update_front(
        parent_id,
        front,
        previous,
        {r.number: r for r in records},
        front_table(front).to_csv(index=False),
        figure,
    )
    study.set_user_attr(FRONT_ATTR, now)
    best = best_trial(records, max_params, study.direction.name.lower())
    note = parent_note(study, space, records, final, tracker.experiment_id)
    finished = sum(1 for r in records if r.finished)
    tracker.publish_summary(
        parent_id, headline_metrics(count_states(records), best), note, step=finished
    )
    return records, front


def parent_note(
    study: optuna.Study,
    space: SearchSpace,
    records: list[TrialRecord],
    final: FinalReport | None,
    experiment_id: str,
) -> str:
    """The parent run's description, built from the storage: the search's headline and
    front, then, once ``sweep finalize`` has run, the final stage's results (``final``,
    :func:`~sweep.search.final.read_final`)."""
    max_params = space.defaults.budget.max_params
    best = best_trial(records, max_params, space.direction)
    counts = count_states(records)
    front = pareto_front(records, max_params)
    note = front_note(
        study.study_name, counts, best, front, max_params, experiment_id, describe(space.defaults)
    )
    if final is None:
        return note
    return (
        note
        + "\n"
        + final_note(final.results, final.front, final.fidelity, final.proxy, experiment_id)
    )


def read_study(
    study_name: str, storage_url: str | None, home: Path
) -> tuple[optuna.Study, SearchSpace, list[TrialRecord]]:
    """An existing study, the space it was run with (kept in its user attrs) and its trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_url = storage_url or default_storage(home)
    check_journal(study_name, storage_url)
    study = open_study(study_name, open_storage(storage_url))
    return study, stored_space(study), load_records(study)


def check_journal(study_name: str, storage_url: str) -> None:
    """Refuse a journal file that is not there: opening one creates it, and a look at a
    study that does not exist must not.

    Raises:
        SweepError: naming the study and the missing journal.
    """
    if "://" not in storage_url and not Path(storage_url).expanduser().is_file():
        raise SweepError(f"--study: no study named {study_name!r} (no journal {storage_url})")


def stored_space(
    study: optuna.Study, overrides: Sequence[str] = (), data_dir: str | None = None
) -> SearchSpace:
    """The space a study was run with (its user attrs), with this host's ``--set`` changes;
    at its final stage for ``sweep finalize``'s own study.

    Raises:
        SweepError: the study was not started by ``sweep run``.
    """
    if SPACE_ATTR not in study.user_attrs:
        raise SweepError(
            f"--study: {study.study_name}: has no search space; start it with "
            f"`sweep run --space FILE --trials N` first"
        )
    document = copy.deepcopy(study.user_attrs[SPACE_ATTR])
    for override in overrides:
        apply_override(document, override, "--set")
    if data_dir is not None:
        apply_override(document, f"dataset.root={data_dir}", "--data-dir")
    name = experiment_of(study.study_name)
    space = parse_space(document, f"study {name}", default_name=name)
    return space.final() if study.user_attrs.get(STAGE_ATTR) == "final" else space


def open_sweep(
    space: SearchSpace,
    trials: int,
    storage_url: str | None = None,
    home: Path | None = None,
    max_retries: int = 1,
    on_stale_trial: StaleTrialCallback | None = None,
    say: Callable[[str], None] | None = None,
) -> SweepSession:
    """Check the input, then create or resume the study and its MLflow parent run.

    Args:
        space: the validated search space.
        trials: finished trials the study should hold (kept in its user attrs for workers).
        storage_url: Optuna storage; default the journal file under the home folder.
        home: the sweep home folder; default ``$SWEEP_HOME`` or ``./sweep-runs``.
        max_retries: how often a trial whose worker died is tried again.
        on_stale_trial: called by Optuna's heartbeat (database storages) for each trial it
            fails because its worker stopped beating.
        say: told what is being prepared, step by step (a terminal's first lines).

    Returns:
        The open session.
    """
    say = say or (lambda _: None)
    home = home or sweep_home()
    # Every check before the first write: bad input, an unreachable tracking server or
    # storage leave the disk as they found it.
    say("checking the data, the teacher file and the budget")
    checked = preflight(space, home)
    check_reachable(tracking_uri(home))
    storage_url = storage_url or default_storage(home)
    say(f"opening study {space.study_name} ({storage_url}) and MLflow ({tracking_uri(home)})")
    storage = open_storage(storage_url, on_stale_trial=on_stale_trial)
    tracker = Tracker(tracking_uri(home), space.study_name, artifact_location(home))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeded = with_seed(space, process_seed(space, storage))
    study = open_study(space.study_name, storage, seeded, checked.num_classes)
    study.set_user_attr(SPACE_ATTR, space.document)
    study.set_user_attr(TARGET_ATTR, trials)
    study.set_user_attr(MAX_RETRIES_ATTR, max_retries)
    lock = study_lock_path(home, space.study_name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        parent_id = tracker.ensure_parent(study, _description(space, trials))
        process = int(study.user_attrs.get(PROCESSES_ATTR, 0))
        study.set_user_attr(PROCESSES_ATTR, process + 1)
    if process:
        # Processes opened at the same moment resume the same seed: without a seed of their
        # own they would propose the same settings in lockstep.
        seeded = with_seed(space, process_seed(space, storage, process))
    place = StudyPlace(home, storage_url, storage)
    return session_of(seeded, place, tracker, parent_id, checked.num_classes)


@contextmanager
def parent_running(session: SweepSession) -> Iterator[None]:
    """Mark the parent run RUNNING for the block, then FINISHED, KILLED (Ctrl-C) or FAILED."""
    session.tracker.set_status(session.parent_id, "RUNNING")
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        # One MLflow call, which the tracker's client completes before a Ctrl-C lands.
        session.tracker.set_status(session.parent_id, status)


def close_sweep(session: SweepSession) -> SweepSummary:
    """Publish the final front (MLflow's parent run, an optuna-dashboard artifact) and
    summarise."""
    space, study, tracker = session.space, session.study, session.tracker
    max_params = space.defaults.budget.max_params
    records, front = refresh_front(study, tracker, session.parent_id, space)
    if front:  # for optuna-dashboard, which draws no accuracy-vs-parameters plot itself
        upload_front(study, records, front, max_params, session.home)
    best = best_trial(records, max_params, space.direction)
    finished = sum(r.finished for r in records)
    return SweepSummary(space.study_name, finished, best, front, session.parent_id)


def check_streaks(records: list[TrialRecord], space: SearchSpace) -> None:
    """Stop a study that only proposes over-budget models, or whose trials keep failing.

    Raises:
        SweepError: naming the space file and what to change.
    """
    streak = infeasible_streak(records)
    if streak >= space.max_infeasible_streak:
        raise SweepError(
            f"{space.source}: params: the last {streak} proposals were all over the "
            f"parameter budget; narrow the search (lower the widths' high ends) "
            f"or raise max_infeasible_streak"
        )
    failed = 0
    for r in sorted(records, key=lambda r: r.number, reverse=True):
        if r.state != "failed":
            break
        failed += 1
    if failed >= MAX_FAILED_STREAK:
        raise SweepError(
            f"{space.source}: the last {failed} trials failed; see the warnings above "
            f"and the FAILED runs in MLflow"
        )


def trial_line(r: TrialRecord, trial: optuna.trial.FrozenTrial) -> str:
    """The progress line's text for a finished trial: accuracy and size, or why it failed."""
    params = f"{r.params:,} params" if r.params is not None else ""
    if r.state == "failed":
        return f"{params} failed: {trial.system_attrs.get('fail_reason', 'see the log')}"
    acc = f"val_acc {r.val_acc:.4f} " if r.val_acc is not None else ""
    trains = f"{trial_label(trial)}: " if pair_of(trial) is not None else ""
    return f"{trains}{acc}{params}"


def _description(space: SearchSpace, trials: int) -> dict[str, object]:
    """The parent run's params: how the study searches and what it holds fixed."""
    base = flatten(space.defaults)
    return {
        "space": space.source,
        "objective": space.objective,
        "sampler": space.sampler["name"],
        "early_stopping": space.early_stopping["name"],
        "trials": trials,
        "searched": ", ".join(p.name for p in space.params),
        **{f"fixed.{k}": v for k, v in base.items() if k.startswith(("budget.", "dataset."))},
    }
