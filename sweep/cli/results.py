"""What a study found: ``sweep status``, ``sweep ui``, ``sweep dashboard``, ``sweep export``,
``sweep predict``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sweep.cli.options import add_storage


def add_parsers(commands: Any) -> None:
    """Register ``status``, ``ui``, ``export`` and ``predict``."""
    status = commands.add_parser("status", help="trials by state, best trial, Pareto front")
    status.add_argument("--study", required=True)
    add_storage(status)
    status.set_defaults(handler=_status)

    ui = commands.add_parser("ui", help="start the MLflow UI on the sweep's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    ui.set_defaults(handler=_ui)

    dashboard = commands.add_parser(
        "dashboard",
        help="start optuna-dashboard on the sweep's storage (safe to write to during a run)",
    )
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    add_storage(dashboard)
    dashboard.set_defaults(handler=_dashboard)

    export = commands.add_parser(
        "export",
        help="write the best feasible student: checkpoint, student.py, torchsummary summary",
    )
    export.add_argument("--study", required=True)
    export.add_argument(
        "--out", required=True, type=Path, help="folder to create (must be missing or empty)"
    )
    export.add_argument(
        "--force", action="store_true", help="replace a non-empty --out folder whole"
    )
    export.add_argument("--data-dir", metavar="DIR", help="data folder for the reload check")
    export.add_argument(
        "--int8",
        action="store_true",
        help="also write student_int8.pt2: static int8, calibrated on training images, "
        "with its accuracy and size next to the float model's in export.json",
    )
    add_storage(export)
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="write Id,Category predictions")
    predict.add_argument("--study", required=True)
    predict.add_argument(
        "--data-dir",
        required=True,
        metavar="DIR",
        help="a folder of images, or a data folder holding evaluation/",
    )
    predict.add_argument("--out", type=Path, default=Path("predict.csv"))
    add_storage(predict)
    predict.set_defaults(handler=_predict)


def _status(args: argparse.Namespace) -> int:
    from sweep.results.status import print_status

    print_status(args.study, args.storage)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from sweep.track.ui import serve_ui

    return serve_ui(args.host, args.port)


def _dashboard(args: argparse.Namespace) -> int:
    from sweep.results.dashboard import serve_dashboard

    try:
        serve_dashboard(args.storage, args.host, args.port)
    except KeyboardInterrupt:  # Ctrl-C is how it stops; no trial was running
        pass
    return 0


def _export(args: argparse.Namespace) -> int:
    from sweep.results.export import export_best

    result = export_best(
        args.study,
        args.out,
        args.storage,
        data_dir=args.data_dir,
        int8=args.int8,
        force=args.force,
    )
    print(f"took {result.reason}")
    print(
        f"exported trial {result.trial} ({result.params:,} parameters) to {result.out}; "
        f"reload check: logged val_acc {result.logged_val_acc:.4f}, "
        f"reloaded {result.reloaded_val_acc:.4f}"
    )
    print(f"hand-in: {result.out / 'student_best.ckpt'}, {result.out / 'student.py'} (torch only)")
    print(f"summary: {result.out / 'summary.txt'} (torchsummary's table, budget and margin)")
    if result.int8_val_acc is not None:
        print(f"int8: val_acc {result.int8_val_acc:.4f} (student_int8.pt2)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sweep.results.export import predict

    done = predict(args.study, args.data_dir, args.out, args.storage)
    print(f"took {done.reason}")
    print(f"wrote {done.rows} predictions of the images in {done.folder} to {args.out}")
    return 0
