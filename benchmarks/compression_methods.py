"""Which compression method wins at 60,000 parameters? Every method side by side, one run.

Each variant is a one-trial study run through ``runners.local.run_sweep`` (the same code path as
``sweep run``) on the bundled demo data (scikit-learn digits, 10 classes, 32 px), sharing one
teacher and one soft-label cache, for the same number of epochs and the same seed:

- a 58,010-parameter student, distilled with each ``kd.method`` (hinton, fitnet, rkd,
  dml, takd);
- a wide student (157,098 parameters) pruned to the budget while it trains (structured,
  ``prune.target_params: 60000``);
- a wide student factorized by SVD (``lowrank``) and one pruned unstructured (counted
  ``nonzero``: under the task's ``dense`` count it could not fit);

and each trained student is also quantized to int8. The table lists validation accuracy,
parameters (the budget's count), int8 accuracy and training time, then each variant's
accuracy gain over the hinton baseline.

    python benchmarks/compression_methods.py --epochs 8
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from runners.local import run_sweep
from sweep.paths import tracking_uri
from sweep.search.space import parse_space

DEMO = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"
BASE_STUDENT = {"student.family": "dsconv", "student.stem": 16, "student.widths": [48, 96, 464]}
WIDE = {"student.family": "dsconv", "student.stem": 32, "student.widths": [96, 192, 640]}

VARIANTS: dict[str, dict[str, Any]] = {
    "hinton": {**BASE_STUDENT},
    "fitnet": {**BASE_STUDENT, "kd.method": "fitnet"},
    "rkd": {**BASE_STUDENT, "kd.method": "rkd"},
    "dml": {**BASE_STUDENT, "kd.method": "dml"},
    "takd": {**BASE_STUDENT, "kd.method": "takd", "kd.assistant_width": 64},
    "prune-to-budget": {
        **WIDE,
        "prune.method": "structured",
        "prune.target_params": 60000,
        "prune.importance": "taylor",
        "prune.steps": 2,
    },
    "lowrank": {**WIDE, "lowrank.rank_ratio": 0.27},
    "unstructured (nonzero)": {
        **WIDE,
        "budget.count": "nonzero",
        "prune.method": "unstructured",
        "prune.rate": 0.7,
        "prune.steps": 2,
    },
}


def _space(name: str, settings: dict[str, Any], epochs: int) -> Any:
    document = copy.deepcopy(yaml.safe_load(DEMO.read_text()))
    document["study"] = f"bench-{name.split()[0]}"
    document["params"] = {}
    document["early_stopping"] = "none"
    fixed = {**document["fixed"], "epochs": epochs, **settings}
    fixed["quantize.int8"] = True
    if "prune.method" in settings:  # prune a half-trained model, fine-tune the rest
        fixed["prune.start_epoch"] = epochs // 2
        fixed["prune.finetune_epochs"] = max(1, (epochs - epochs // 2) // settings["prune.steps"])
    if "lowrank.rank_ratio" in settings:
        fixed["lowrank.start_epoch"] = epochs // 2
    budget = {k.split(".")[1]: fixed.pop(k) for k in list(fixed) if k.startswith("budget.")}
    document["budget"] = {**document["budget"], **budget}
    document["fixed"] = fixed
    return parse_space(document, f"benchmark {name}")


def main() -> None:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--only", nargs="*", help="variant names to run (default all)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    rows = []
    for name, settings in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        space = _space(name, settings, args.epochs)
        start = time.perf_counter()
        summary = run_sweep(space, 1, home=home, show_progress=False)
        wall = time.perf_counter() - start
        best = summary.best
        if best is None:
            rows.append((name, None, None, None, None, wall))
            continue
        run = MlflowClient(tracking_uri(home)).get_run(best.run_id)
        m = run.data.metrics
        acc, int8 = m["best_val_acc"], m.get("int8_val_acc")
        rows.append((name, acc, int(m["params"]), int8, m["train_seconds"], wall))
    print(f"\n{args.epochs} epochs each on the demo data (10 classes, 32 px), budget 60,000")
    print(f"{'variant':24} {'val_acc':>8} {'params':>8} {'int8':>8} {'train s':>8} {'wall s':>8}")
    for name, acc, params, int8, seconds, wall in rows:
        if acc is None:
            print(f"{name:24} {'infeasible / failed':>35} {wall:8.1f}")
            continue
        print(f"{name:24} {acc:8.4f} {params:8,} {int8:8.4f} {seconds:8.1f} {wall:8.1f}")
    baseline = next((r[1] for r in rows if r[0] == "hinton" and r[1] is not None), None)
    if baseline is not None:
        gains = ", ".join(f"{r[0]} {r[1] - baseline:+.4f}" for r in rows if r[1] is not None)
        print(f"val_acc against hinton: {gains}")


if __name__ == "__main__":
    main()
