"""``sweep finalize``: the final study's queued trainings, in this process or a pool.

The final study is opened (and its trainings queued) by :func:`sweep.search.finalize.open_final`;
from there it runs exactly like a search: :func:`runners.local.run_trials` alone, or
:func:`runners.pool.run_pooled` with ``--workers``/``--gpus``, where every worker is a
``sweep worker --study NAME.final`` (hosts may join the same way). Re-running the command
continues it: finished seeds are never trained again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.recovery import StaleTrialRetry
from runners.session import close_final
from runners.slots import PoolOptions, plan_slots, usable_cpus
from sweep.records import FinalResult
from sweep.search.finalize import FinalPlan, open_final
from sweep.track.progress import preparing


@dataclass(frozen=True)
class FinalSummary:
    """What a finished ``sweep finalize`` reports."""

    study_name: str  # the final study
    plan: FinalPlan
    results: list[FinalResult]  # best mean first
    parent_run_id: str


def run_finalize(
    study_name: str,
    top: int | None,
    seeds: int | None,
    options: PoolOptions,
    storage_url: str | None = None,
    home: Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    show_progress: bool = True,
) -> FinalSummary:
    """Train the chosen search trials at the final fidelity, ``seeds`` seeds each.

    Args:
        study_name: the search study.
        top: its ``top`` best feasible trials; None: its front's members.
        seeds: seeds per architecture; None: the space's ``fidelity.final.seeds``.
        options: workers and GPUs, as for ``sweep run``.
        storage_url: the study's Optuna storage.
        home: the sweep home folder.
        overrides: ``--set`` changes to the stored space.
        data_dir: shorthand for ``--set dataset.root=DIR``.
        show_progress: draw the live display.

    Returns:
        The plan and the results per architecture.
    """
    stale = StaleTrialRetry()
    session, plan = open_final(
        study_name,
        top,
        seeds,
        storage_url,
        home,
        options.max_retries,
        overrides,
        data_dir,
        on_stale_trial=stale,
        say=preparing,
    )
    stale.bind(session.tracker, session.parent_id, options.max_retries)
    if options.pooled:
        import torch

        from runners.pool import run_pooled

        slots = plan_slots(options, torch.cuda.device_count(), usable_cpus())
        run_pooled(session, slots, options.max_retries, show_progress)
    else:
        from runners.local import run_trials
        from sweep.search.study import parent_running

        with parent_running(session):
            run_trials(session, show_progress)
    results = close_final(session)
    return FinalSummary(session.study.study_name, plan, results, session.parent_id)
