"""What a study's runs say at a glance: the parent's headline and note, each trial's note.

The parent run is the first thing a person sees of a study in the MLflow UI, so it carries
the answer: the best feasible accuracy and its parameter count, the trials by state (as
metrics, one point per refresh, so they chart the study's progress), and a description
(``mlflow.note.content``) with the front as a table whose rows link to each member's run.
A trial's run opens on its own description: the student, its size against the budget and
its accuracy, rounded as a person reads them (the metrics below keep every digit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sweep.config import TrialConfig
from sweep.records import FinalResult, TrialRecord

# The state counts the parent logs, as ``trials_<state>``.
COUNTED = ("complete", "early-stopped", "infeasible", "duplicate", "failed")


def headline_metrics(counts: Mapping[str, int], best: TrialRecord | None) -> dict[str, float]:
    """``best_val_acc`` and ``params`` of the best feasible trial, and ``trials_<state>``
    from ``counts`` (trials by state)."""
    metrics: dict[str, float] = {
        f"trials_{state.replace('-', '_')}": counts[state] for state in COUNTED
    }
    if best is not None and best.val_acc is not None and best.params is not None:
        metrics["best_val_acc"] = best.val_acc
        metrics["params"] = best.params
    return metrics


def run_link(experiment_id: str, run_id: str) -> str:
    """The UI's address of a run, relative to the UI (works on any host it is served from),
    on MLflow 3's model-training pages: without ``workflowType`` a browser that never chose
    opens a run on the GenAI ones ("Evaluation runs", "Judges")."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def trial_note(
    cfg: TrialConfig,
    params: int,
    macs: int,
    *,
    val_acc: float,
    best_epoch: int,
    epochs_run: int,
    stopped_early: bool,
    seconds: float,
) -> str:
    """A trained trial's description: ``**dsconv**, 45,202 parameters (14,798 under the
    60,000 budget), ... best **val_acc 0.9749** at epoch 5 of 6 ...`` (``best_epoch``
    0-based, as training counts)."""
    size = cfg.dataset.image_size
    budget = cfg.budget.max_params
    ended = f" (stopped early after {epochs_run})" if stopped_early else ""
    return (
        f"**{cfg.student.family}**, {params:,} parameters ({budget - params:,} under the "
        f"{budget:,} budget), {macs:,} MACs at {size}x{size} px.\n\n"
        f"Best **val_acc {val_acc:.4f}** at epoch {best_epoch + 1} of {cfg.train.epochs}"
        f"{ended}, in {seconds:.0f} s; seed {cfg.train.seed}. Settings in `config.yaml`, "
        f"the layers in `model_summary.txt`.\n"
    )


def front_note(
    study_name: str,
    counts: Mapping[str, int],
    best: TrialRecord | None,
    front: Sequence[TrialRecord],
    max_params: int,
    experiment_id: str,
    fidelity: str = "",
) -> str:
    """The parent run's description: headline, trials by state, the front as a table.

    ``fidelity`` says how the search trained its trials (``20 epochs at 112 px ...``).
    """
    states = " · ".join(f"{counts[s]} {s}" for s in COUNTED if counts[s] or s == "complete")
    if best is None or best.val_acc is None or best.params is None:
        found = f"no complete trial within {max_params:,} parameters yet"
    else:
        found = (
            f"best feasible **val_acc {best.val_acc:.4f}** with **{best.params:,} parameters** "
            f"([trial {best.number}]({run_link(experiment_id, best.run_id or '')}), "
            f"{best.family}); budget {max_params:,}"
        )
    lines = [
        f"### Study {study_name}: {found}",
        "",
        f"Trials: {states}." + (f" Stage search: {fidelity}." if fidelity else ""),
        "",
        "**Pareto front** (accuracy vs parameters, fewest parameters first; "
        "stage: search). Each row links to the trial's run.",
        "",
        "| trial | val_acc | params | MACs | family |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in front:
        trial = f"[{r.number}]({run_link(experiment_id, r.run_id)})" if r.run_id else str(r.number)
        macs = f"{r.macs:,}" if r.macs is not None else "-"
        lines.append(
            f"| {trial} | {r.val_acc or 0:.4f} | {r.params or 0:,} | {macs} | {r.family or '-'} |"
        )
    if not front:
        lines.append("| - | - | - | - | - |")
    return "\n".join(lines) + "\n"


def final_metrics(results: Sequence[FinalResult], complete: int) -> dict[str, float]:
    """The final stage's headline: mean, spread and size of the best finalized architecture,
    and how many final trainings are complete."""
    metrics: dict[str, float] = {"final_trainings_complete": complete}
    if results:
        best = results[0]
        metrics.update(final_val_acc_mean=best.mean, final_params=best.params)
        if best.std is not None:
            metrics["final_val_acc_std"] = best.std
    return metrics


def final_note(
    results: Sequence[FinalResult],
    front: Sequence[FinalResult],
    fidelity: str,
    proxy: str,
    experiment_id: str,
) -> str:
    """The parent's description of the final stage: each finalized architecture's proxy
    score beside its final mean and spread, and the final front (built from the means)."""
    on_front = {f.source.number for f in front}
    if results:
        best = results[0]
        spread = f" ± {best.std:.4f}" if best.std is not None else ""
        found = (
            f"best mean **val_acc {best.mean:.4f}{spread}** over {len(best.runs)} seeds with "
            f"**{best.params:,} parameters** (trial {best.source.number}, {best.source.family})"
        )
    else:
        found = "no final training complete yet"
    lines = [
        "---",
        "",
        f"### Final stage: {found}",
        "",
        f"Stage final: {fidelity}, each architecture with several seeds; the proxy scores "
        f"are the search's ({proxy}). The final front (★) is built from the means; each "
        "trial links to its best seed's run.",
        "",
        "| trial | proxy val_acc | final mean | sd | seeds | params | MACs | family | front |",
        "|---:|---:|---:|---:|---:|---:|---:|---|:---:|",
    ]
    for f in results:
        _, run = f.best_seed()
        trial = f"[{f.source.number}]({run_link(experiment_id, run.run_id or '')})"
        sd = f"{f.std:.4f}" if f.std is not None else "-"
        macs = f"{f.macs:,}" if f.macs is not None else "-"
        lines.append(
            f"| {trial} | {f.source.val_acc or 0:.4f} | {f.mean:.4f} | {sd} | "
            f"{len(f.runs)}/{f.wanted} | {f.params:,} | {macs} | {f.source.family or '-'} | "
            f"{'★' if f.source.number in on_front else ''} |"
        )
    return "\n".join(lines) + "\n"
