"""``sweep prune-curve``: accuracy and latency against parameters for one checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sweep.cli.options import add_space


def add_parsers(commands: Any) -> None:
    """Register ``prune-curve``."""
    prune_curve = commands.add_parser(
        "prune-curve",
        help="val accuracy and latency vs parameters, structured and unstructured pruning",
        description="Prune a checkpoint (teacher or student) at each rate, one-shot (no "
        "fine-tuning), both structured (channels removed) and unstructured (weights zeroed); "
        "evaluate on the space's validation split, time a forward, write prune_curve.csv and "
        "prune_curve.png and log them to the MLflow experiment sweep-prune-curves.",
    )
    add_space(prune_curve)
    prune_curve.add_argument(
        "--checkpoint", required=True, type=Path, metavar="FILE", help="a state dict file"
    )
    prune_curve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a student's student_config.yaml or config.yaml (default: the one next to "
        "--checkpoint; a ResNet18 teacher needs none)",
    )
    prune_curve.add_argument(
        "--rates",
        default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        help="comma-separated pruning rates in [0, 1) (default %(default)s)",
    )
    prune_curve.add_argument(
        "--importance",
        default="magnitude",
        metavar="NAME",
        help="channel criterion: magnitude (default), bn_scale, taylor",
    )
    prune_curve.add_argument(
        "--latency-device", default="cpu", metavar="DEVICE", help="where latency is timed (cpu)"
    )
    prune_curve.add_argument(
        "--latency-batch", type=int, default=1, metavar="N", help="images per timed forward (1)"
    )
    prune_curve.add_argument("--out", type=Path, default=Path("prune-curve"), metavar="DIR")
    prune_curve.set_defaults(handler=_prune_curve)


def _prune_curve(args: argparse.Namespace) -> int:
    from sweep.results.prune_curve import EXPERIMENT, CurvePoint, parse_rates, run_prune_curve
    from sweep.search.space import load_space

    rates = parse_rates(args.rates)
    space = load_space(args.space, args.overrides, args.data_dir)

    def on_point(p: CurvePoint) -> None:
        if p.rate == rates[0] and p.kind == "structured":  # the header, once
            print(
                f"{'rate':>5} {'kind':<12} {'val_acc':>7} {'dense':>11} "
                f"{'nonzero':>11} {'latency_ms':>10}"
            )
        print(
            f"{p.rate:>5g} {p.kind:<12} {p.val_acc:>7.4f} {p.params_dense:>11,} "
            f"{p.params_nonzero:>11,} {p.latency_ms:>10.3f}",
            flush=True,
        )

    report = run_prune_curve(
        args.checkpoint,
        space,
        rates,
        args.out,
        config=args.config,
        importance=args.importance,
        latency_device=args.latency_device,
        latency_batch=args.latency_batch,
        on_point=on_point,
    )
    print(f"{report.architecture}: wrote {', '.join(str(f) for f in report.files)}")
    print(f"MLflow run {report.run_id} in experiment {EXPERIMENT}: see `sweep ui`")
    return 0
