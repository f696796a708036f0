"""``sweep status``: trials by state, the best feasible trial and the front, as tables."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sweep.paths import sweep_home
from sweep.records import STATES, TrialRecord
from sweep.search.fidelity import describe
from sweep.search.final import FinalReport, export_choice, read_final
from sweep.search.pareto import best_trial, count_states, pareto_front
from sweep.search.study import TARGET_ATTR, read_study

# The states that do not count toward ``--trials``, as the headline names them.
_ASIDE = {
    "infeasible": "over budget",
    "duplicate": "duplicate",
    "failed": "failed",
    "running": "running",
}


def headline(study_name: str, counts: dict[str, int], target: int | None) -> str:
    """``study kd_small: 4 of 4 finished (+4 over budget, 1 failed)``: the trials that count
    toward ``--trials`` against the target, then the rest by what they are."""
    finished = counts["complete"] + counts["early-stopped"]
    line = f"study {study_name}: {finished}" + (f" of {target}" if target else "") + " finished"
    aside = [f"{counts[state]} {name}" for state, name in _ASIDE.items() if counts[state]]
    if aside:
        line += " (+" + ", ".join(aside) + ")"
    return line


def _trial_table(title: str, records: list[TrialRecord]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("trial", "val_acc", "params", "MACs", "family", "MLflow run"):
        table.add_column(
            column, justify="right" if column in ("trial", "params", "MACs") else "left"
        )
    for r in records:
        table.add_row(
            str(r.number),
            f"{r.val_acc:.4f}" if r.val_acc is not None else "-",
            f"{r.params:,}" if r.params is not None else "-",
            f"{r.macs:,}" if r.macs is not None else "-",
            r.family or "-",
            r.run_id or "-",
        )
    return table


def print_status(
    study_name: str,
    storage_url: str | None = None,
    home: Path | None = None,
    console: Console | None = None,
) -> dict[str, int]:
    """Print the study's state counts, best feasible trial and Pareto front.

    Returns:
        The count of trials in each state.
    """
    home = home or sweep_home()
    # On a terminal, fit it; piped or redirected, never cut a run id to 80 columns.
    console = console or (Console() if sys.stdout.isatty() else Console(width=10_000))
    study, space, records = read_study(study_name, storage_url, home)
    max_params = space.defaults.budget.max_params
    # Table titles wrap to the table's width: what stage the numbers are from is a line.
    console.print(f"stage {space.stage}: {describe(space.defaults)}")
    counts = count_states(records)

    target = study.user_attrs.get(TARGET_ATTR)
    states = Table(title=headline(study_name, counts, target), title_justify="left")
    for state in STATES:
        states.add_column(state, justify="right")
    states.add_row(*(str(counts[s]) for s in STATES))
    console.print(states)

    best = best_trial(records, max_params, space.direction)
    if best is None:
        console.print(f"no complete trial within {max_params:,} parameters yet")
    else:
        console.print(_trial_table(f"best feasible trial (budget {max_params:,})", [best]))
    front = pareto_front(records, max_params)
    console.print(_trial_table("Pareto front (accuracy vs parameters)", front))
    final = read_final(study, space, records)
    if final is not None:
        console.print(
            f"stage final: {final.fidelity}; proxy val_acc is the search's score, final mean "
            f"and sd over the seeds; ★ the final front, built from the means"
        )
        console.print(_final_table(final))
        if final.results:
            _, _, _, reason = export_choice(final.results)
            console.print(f"sweep export takes {reason}")
    return counts


def _final_table(final: FinalReport) -> Table:
    """Each finalized architecture: proxy score, final mean and spread, size; ★ on the
    final front (built from the means)."""
    table = Table(title="finalized architectures", title_justify="left")
    columns = ("trial", "proxy val_acc", "final mean", "sd", "seeds", "params", "MACs")
    for column in (*columns, "family", "front"):
        table.add_column(column, justify="left" if column == "family" else "right")
    on_front = {f.source.number for f in final.front}
    for f in final.results:
        table.add_row(
            str(f.source.number),
            f"{f.source.val_acc:.4f}" if f.source.val_acc is not None else "-",
            f"{f.mean:.4f}",
            f"{f.std:.4f}" if f.std is not None else "-",
            f"{len(f.runs)}/{f.wanted}",
            f"{f.params:,}",
            f"{f.macs:,}" if f.macs is not None else "-",
            f.source.family or "-",
            "★" if f.source.number in on_front else "",
        )
    if not final.results:
        table.add_row("-", "-", "no final training complete yet", *["-"] * 6)
    return table
