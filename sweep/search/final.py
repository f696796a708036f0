"""``sweep finalize``: the best architectures of a cheap search, trained again properly.

A search at proxy fidelity (``fidelity.search``: few epochs, small images, part of the
training set) ranks architectures; its winner is the luckiest of many short runs. The final
study ``<name>.final``, kept in the search study's storage, trains each chosen search trial's
settings at ``fidelity.final`` with several seeds. Each (source trial, seed) is one queued
Optuna trial (WAITING, with the user attrs ``source_trial`` and ``seed``), taken by the same
:class:`~runners.loop.TrialLoop` as search trials: a local pool, hosts on one storage,
resume and crash retry work as for ``sweep run``. Their MLflow runs join the search study's
experiment under its parent run, tagged ``stage=final``.

The report of a finalized study is per architecture: the proxy score, the mean and standard
deviation over the seeds finished, parameters and MACs at the final size; the final front is
built from the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep.config import TrialConfig
from sweep.errors import SweepError
from sweep.records import FinalResult, TrialRecord
from sweep.search.duplicates import earlier_with_same_settings, taken_trials
from sweep.search.fidelity import describe
from sweep.search.optuna_internals import study_storage
from sweep.search.pareto import feasible_complete, pareto_front, record
from sweep.search.space import SearchSpace
from sweep.search.storage import study_names

SOURCE_ATTR = "source_trial"  # the search trial whose settings a final trial trains
SEED_ATTR = "seed"  # which of its seeds: train.seed = the search's seed + this
QUEUED_ATTRS = (SOURCE_ATTR, SEED_ATTR)  # carried over when a crashed training is retried
STAGE_ATTR = "stage"  # "final" on a final study
WANTED_ATTR = "final_queue"  # the (source, seed) pairs the last `sweep finalize` asked for
MARK_ATTR = "final_queued_at"  # trials the study held then: failures after it are counted

Pair = tuple[int, int]


def pair_of(trial: FrozenTrial | optuna.Trial) -> Pair | None:
    """The (source trial, seed) a final trial trains, or None for one not queued by us."""
    attrs = trial.user_attrs
    if SOURCE_ATTR not in attrs or SEED_ATTR not in attrs:
        return None
    return int(attrs[SOURCE_ATTR]), int(attrs[SEED_ATTR])


def trial_label(trial: FrozenTrial | optuna.Trial) -> str:
    """What a person calls a trial: ``trial S seed K`` for a final training (the search trial
    it trains again; the final study's own numbering means nothing to a person), else
    ``trial N``."""
    pair = pair_of(trial)
    return f"trial {trial.number}" if pair is None else f"trial {pair[0]} seed {pair[1]}"


def candidates(
    records: Sequence[TrialRecord], max_params: int, top: int | None
) -> list[TrialRecord]:
    """The search trials to finalize, best proxy score first.

    Args:
        records: the search study's trials.
        max_params: the budget.
        top: the ``top`` most accurate feasible complete trials; None: the front's members.
    """
    chosen = (
        pareto_front(records, max_params)
        if top is None
        else feasible_complete(records, max_params)
    )
    chosen = sorted(chosen, key=lambda r: (-(r.val_acc or 0.0), r.params, r.number))
    return chosen if top is None else chosen[:top]


def queue_pairs(study: optuna.Study, wanted: Sequence[Pair]) -> int:
    """Queue every wanted training not finished, queued or running yet; return the target.

    Call it under the study's host lock. The target (finished trainings the study should
    hold) counts what is finished, queued or running besides: an earlier finalize's queue
    that was interrupted is trained too, never dropped.
    """
    trials = study.get_trials(deepcopy=False)
    done = {pair_of(t) for t in trials if t.state == TrialState.COMPLETE}
    pending = {pair_of(t) for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    study.set_user_attr(WANTED_ATTR, [list(p) for p in wanted])
    study.set_user_attr(MARK_ATTR, len(trials))
    for source, seed in wanted:
        if (source, seed) not in done | pending:
            study.enqueue_trial({}, user_attrs={SOURCE_ATTR: source, SEED_ATTR: seed})
    return len((done | pending | set(wanted)) - {None})


def refill(study: optuna.Study, max_retries: int) -> None:
    """Queue again a wanted training whose trials all failed, up to ``max_retries`` times.

    A training is lost when its trial failed without a retry (left running by a process
    killed whole, or it raised); the gate calls this before a worker takes a trial, under
    the study's lock, so the queue never runs dry while the target is not reached.

    Raises:
        SweepError: a training failed more than ``max_retries`` times since the last
            ``sweep finalize``, naming it and why.
    """
    trials = study.get_trials(deepcopy=False)
    live = {
        pair_of(t)
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    }
    mark = int(study.user_attrs.get(MARK_ATTR, 0))
    for source, seed in (tuple(p) for p in study.user_attrs.get(WANTED_ATTR, [])):
        if (source, seed) in live:
            continue
        failed = [
            t
            for t in trials
            if t.number >= mark and t.state == TrialState.FAIL and pair_of(t) == (source, seed)
        ]
        if len(failed) > max_retries:
            reason = failed[-1].system_attrs.get("fail_reason", "see its FAILED run in MLflow")
            raise SweepError(
                f"--study {study.study_name}: the final training of trial {source} seed "
                f"{seed} failed {len(failed)} times ({reason}); fix it and run `sweep "
                f"finalize` again"
            )
        study.enqueue_trial({}, user_attrs={SOURCE_ATTR: source, SEED_ATTR: seed})


@dataclass(frozen=True)
class FinalTrials:
    """The trial source of a final study: queued (source trial, seed) trainings.

    Attributes:
        space: the space at its final stage (:meth:`SearchSpace.final`).
        source: the search study whose trials are trained again.
    """

    space: SearchSpace
    source: optuna.Study

    def config(self, trial: optuna.Trial) -> TrialConfig:
        """The source trial's settings at the final fidelity, with the seed's ``train.seed``.

        Raises:
            SweepError: the trial was not queued by ``sweep finalize`` (nothing to train).
        """
        pair = pair_of(trial)
        if pair is None:
            raise SweepError(
                f"--study {trial.study.study_name}: trial {trial.number} was not queued by "
                f"`sweep finalize`; nothing to train"
            )
        source, seed = pair
        params = self.source_trial(source).params
        base = self.space.trial_config(params).train.seed
        return self.space.trial_config({**params, "train.seed": base + seed})

    def source_trial(self, number: int) -> FrozenTrial:
        """A trial of the search study, by number."""
        return next(t for t in self.source.get_trials(deepcopy=False) if t.number == number)

    def run_tags(self, trial: optuna.Trial) -> dict[str, str]:
        """``source_trial`` and ``seed``, and the final study's name."""
        source, seed = pair_of(trial) or (-1, -1)
        return {
            SOURCE_ATTR: str(source),
            SEED_ATTR: str(seed),
            "optuna.study": trial.study.study_name,
        }

    def duplicate(self, trial: optuna.Trial) -> FrozenTrial | None:
        """An earlier trial training the same source trial with the same seed."""
        return earlier_with_same_settings(trial, taken_trials(trial), settings=pair_of)


def final_results(
    search: Sequence[TrialRecord], final: Sequence[FrozenTrial], max_params: int
) -> list[FinalResult]:
    """Per finalized architecture, its complete final trainings; best mean first."""
    by_number = {r.number: r for r in search}
    wanted: dict[int, set[int]] = {}
    runs: dict[int, list[tuple[int, TrialRecord]]] = {}
    for trial in final:
        pair = pair_of(trial)
        if pair is None:
            continue
        wanted.setdefault(pair[0], set()).add(pair[1])
        done = record(trial)
        if done.state == "complete" and done.params is not None and done.params <= max_params:
            runs.setdefault(pair[0], []).append((pair[1], done))
    results = []
    for source, trainings in runs.items():
        trainings.sort(key=lambda pair: pair[0])
        results.append(
            FinalResult(
                source=by_number[source],
                runs=tuple(r for _, r in trainings),
                seeds=tuple(s for s, _ in trainings),
                wanted=len(wanted[source]),
            )
        )
    return sorted(results, key=lambda f: (-f.mean, f.params, f.source.number))


def final_front(results: Sequence[FinalResult]) -> list[FinalResult]:
    """Finalized architectures no other beats on mean accuracy at no more parameters;
    fewest parameters first."""
    front: list[FinalResult] = []
    best = float("-inf")
    for result in sorted(results, key=lambda f: (f.params, -f.mean, f.source.number)):
        if result.mean > best:
            front.append(result)
            best = result.mean
    return front


def export_choice(results: Sequence[FinalResult]) -> tuple[FinalResult, int, TrialRecord, str]:
    """The finalized model to hand in: the best mean's architecture, its best seed.

    Its best seed, not the one closest to the mean: the seeds are the same architecture
    trained alike, so the best one on validation is the best expected model to hand in;
    its validation score is optimistic by that choice, which is why the mean is reported
    beside it as the honest estimate.

    Returns:
        The architecture, the seed, its training, and the reason in words.
    """
    best = results[0]
    seed, run = best.best_seed()
    spread = f" +- {best.std:.4f}" if best.std is not None else ""
    reason = (
        f"trial {best.source.number} (final stage), seed {seed}: the best mean over seeds "
        f"({best.mean:.4f}{spread}, {len(best.runs)} of {best.wanted} seeds), and its best "
        f"seed on validation ({run.val_acc:.4f}); expect about the mean on unseen images"
    )
    return best, seed, run, reason


@dataclass(frozen=True)
class FinalReport:
    """A finalized study as ``sweep status`` and ``sweep export`` read it."""

    results: list[FinalResult]  # best mean first
    front: list[FinalResult]
    fidelity: str  # the final stage in words
    proxy: str  # the search stage in words


def read_final(
    search: optuna.Study, space: SearchSpace, records: list[TrialRecord]
) -> FinalReport | None:
    """The final stage of a search study, or None when it was never finalized.

    Args:
        search: the search study (its storage holds the final study, if any).
        space: the space it was run with.
        records: its trials.
    """
    if space.stage == "final":  # a final study has no final stage of its own
        return None
    final = space.final()
    storage = study_storage(search)
    if final.study_name not in study_names(storage):
        return None
    study = optuna.load_study(study_name=final.study_name, storage=storage)
    max_params = space.defaults.budget.max_params
    results = final_results(records, study.get_trials(deepcopy=False), max_params)
    return FinalReport(
        results, final_front(results), describe(final.defaults), describe(space.defaults)
    )
