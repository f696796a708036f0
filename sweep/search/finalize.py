"""Opening, reporting and reading a final study (``sweep finalize``, see :mod:`.final`).

``sweep finalize`` opens the final study here and then runs it like ``sweep run`` runs a
search: in this process or a pool (:mod:`runners.finalize`). ``sweep status`` and
``sweep export`` read it back with :func:`read_final`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pandas as pd
from filelock import FileLock

from sweep.errors import SweepError
from sweep.paths import (
    artifact_location,
    default_storage,
    study_lock_path,
    sweep_home,
    tracking_uri,
)
from sweep.records import TrialRecord
from sweep.search.fidelity import describe
from sweep.search.final import (
    STAGE_ATTR,
    FinalResult,
    candidates,
    queue_pairs,
    read_final,
)
from sweep.search.pareto import pareto_front
from sweep.search.preflight import preflight
from sweep.search.space import SearchSpace, experiment_of
from sweep.search.storage import StaleTrialCallback, open_storage
from sweep.search.study import (
    MAX_RETRIES_ATTR,
    SPACE_ATTR,
    TARGET_ATTR,
    StudyPlace,
    SweepSession,
    check_journal,
    load_records,
    open_study,
    parent_note,
    process_seed,
    session_of,
    stored_space,
    with_seed,
)
from sweep.track.plots import front_figure
from sweep.track.summary import final_metrics
from sweep.track.tracker import PARENT_ATTR, Tracker, check_reachable


@dataclass(frozen=True)
class FinalPlan:
    """What ``sweep finalize`` is about to train."""

    chosen: list[TrialRecord]  # the search trials, best proxy score first
    seeds: int
    target: int  # final trainings the final study will hold
    fidelity: str  # the final stage in words


def open_final(
    study_name: str,
    top: int | None,
    seeds: int | None,
    storage_url: str | None = None,
    home: Path | None = None,
    max_retries: int = 1,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    on_stale_trial: StaleTrialCallback | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[SweepSession, FinalPlan]:
    """Check everything, then create or resume the final study and queue its trainings.

    Args:
        study_name: the search study.
        top: finalize its ``top`` best feasible trials; None: its front's members.
        seeds: seeds per architecture; None: the space's ``fidelity.final.seeds``.
        storage_url: the search study's Optuna storage.
        home: the sweep home folder.
        max_retries: how often a training whose worker died is tried again.
        overrides: ``--set`` changes to the stored space (``fidelity.final.epochs=...``).
        data_dir: shorthand for ``--set dataset.root=DIR``.
        on_stale_trial: Optuna's heartbeat callback (database storages).
        say: told what is being prepared.

    Returns:
        The open final study as a session (its ``trials`` is the target) and the plan.

    Raises:
        SweepError: no such study, nothing feasible to finalize yet, bad overrides, the data
            or the tracking store unusable; nothing is written then.
    """
    say = say or (lambda _: None)
    home = home or sweep_home()
    storage_url = storage_url or default_storage(home)
    check_journal(study_name, storage_url)
    storage = open_storage(storage_url, on_stale_trial=on_stale_trial)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = open_study(study_name, storage)
    space = stored_space(search, overrides, data_dir)
    final = space.final()
    seeds = seeds or space.fidelity.seeds
    max_params = space.defaults.budget.max_params
    chosen = candidates(load_records(search), max_params, top)
    if not chosen:
        raise SweepError(f"--study: {study_name}: no complete trial within the budget to finalize")
    say("checking the data, the teacher file and the budget at the final fidelity")
    checked = preflight(final, home)
    check_reachable(tracking_uri(home))
    tracker = Tracker(tracking_uri(home), study_name, artifact_location(home), stage="final")
    parent_id = tracker.parent_of(search)
    say(f"opening study {final.study_name} ({storage_url})")
    seeded = with_seed(final, process_seed(final, storage))
    study = open_study(final.study_name, storage, seeded, checked.num_classes)
    attrs = {SPACE_ATTR: space.document, STAGE_ATTR: "final", PARENT_ATTR: parent_id}
    for key, value in {**attrs, MAX_RETRIES_ATTR: max_retries}.items():
        study.set_user_attr(key, value)
    wanted = [(r.number, seed) for r in chosen for seed in range(seeds)]
    target = _queue(study, wanted, study_lock_path(home, final.study_name))
    place = StudyPlace(home, storage_url, storage)
    session = session_of(seeded, place, tracker, parent_id, checked.num_classes)
    return session, FinalPlan(chosen, seeds, target, describe(final.defaults))


def _queue(study: optuna.Study, wanted: list[tuple[int, int]], lock: Path) -> int:
    """Queue the wanted trainings under the study's host lock; store and return the target."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        target = queue_pairs(study, wanted)
        study.set_user_attr(TARGET_ATTR, target)
    return target


def publish_final(session: SweepSession) -> list[FinalResult]:
    """Publish the final stage on the parent run (the description, built from the storage
    with the search's front first; the headline metrics; ``final_front.csv``) and return
    the results, best mean first."""
    search = optuna.load_study(
        study_name=experiment_of(session.study.study_name), storage=session.storage
    )
    space = replace(session.space, stage="search", study_name=search.study_name)
    records = load_records(search)
    report = read_final(search, space, records)
    results = report.results if report is not None else []
    tracker = session.tracker
    note = parent_note(search, space, records, report, tracker.experiment_id)
    trials = session.study.get_trials(deepcopy=False)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    tracker.publish_summary(session.parent_id, final_metrics(results, complete), note, complete)
    front = report.front if report is not None else []
    table = final_table(front).to_csv(index=False)
    tracker.log_files(session.parent_id, {"final_front.csv": table})
    _log_front_figure(session.parent_id, tracker, space, records, results)
    return results


def _log_front_figure(
    parent_id: str,
    tracker: Tracker,
    space: SearchSpace,
    records: Sequence[TrialRecord],
    results: Sequence[FinalResult],
) -> None:
    """``pareto.png`` again, with the final means and their spread over the seeds."""
    max_params = space.defaults.budget.max_params
    front = pareto_front(records, max_params)
    figure = front_figure(records, front, max_params, space.study_name, results)
    tracker.log_figure(parent_id, figure, "pareto.png")


def final_table(results: Sequence[FinalResult]) -> pd.DataFrame:
    """Finalized architectures as a table (``final_front.csv``)."""
    rows = [
        {
            "trial": f.source.number,
            "proxy_val_acc": f.source.val_acc,
            "final_mean": f.mean,
            "final_std": f.std,
            "seeds": len(f.runs),
            "params": f.params,
            "macs": f.macs,
            "family": f.source.family,
        }
        for f in results
    ]
    columns = ["trial", "proxy_val_acc", "final_mean", "final_std", "seeds", "params", "macs"]
    return pd.DataFrame(rows, columns=[*columns, "family"])
