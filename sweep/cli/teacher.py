"""``sweep teacher train`` and ``sweep teacher cache``: the study's teacher, ahead of a run."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from sweep.cli.options import add_space


def add_parsers(commands: Any) -> None:
    """Register ``teacher train`` and ``teacher cache``."""
    teacher = commands.add_parser("teacher", help="teacher commands")
    teacher_commands = teacher.add_subparsers(dest="teacher_command", required=True)
    train = teacher_commands.add_parser(
        "train", help="train the space's ResNet18 teacher from scratch"
    )
    add_space(train)
    train.set_defaults(handler=_train)
    cache = teacher_commands.add_parser(
        "cache", help="compute the teacher's soft labels over augmented views, once"
    )
    add_space(cache)
    cache.add_argument("--views", type=int, help="augmented views (default kd.views)")
    cache.set_defaults(handler=_cache)


def _on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
    print(f"teacher epoch {epoch + 1}/{epochs} val_acc {metrics['val_acc']:.4f}", flush=True)


def _train(args: argparse.Namespace) -> int:
    from sweep.paths import sweep_home
    from sweep.search.preflight import preflight
    from sweep.search.space import load_space
    from sweep.teacher.store import ensure_teacher, teacher_path

    space = load_space(args.space, args.overrides, args.data_dir)
    home = sweep_home()
    checked = preflight(space, home)
    path = teacher_path(space.defaults, checked.num_classes, home)
    if path.exists():
        print(f"teacher already trained: {path}")
        return 0
    _, path = ensure_teacher(space.defaults, checked.num_classes, home, _on_epoch)
    print(f"teacher saved to {path}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from sweep.errors import SweepError
    from sweep.paths import sweep_home
    from sweep.search.preflight import preflight
    from sweep.search.space import load_space
    from sweep.teacher.store import ensure_teacher
    from sweep.teacher.trial_data import study_soft_labels
    from sweep.train import resolve_device

    if args.views is not None and args.views < 1:
        raise SweepError("--views: must be at least 1")
    space = load_space(args.space, args.overrides, args.data_dir)
    home = sweep_home()
    checked = preflight(space, home)
    cfg = space.defaults
    if args.views is not None:
        cfg = replace(cfg, kd=replace(cfg.kd, views=args.views))
    teacher, path = ensure_teacher(cfg, checked.num_classes, home, _on_epoch)
    soft = study_soft_labels(cfg, home, teacher, path, resolve_device(cfg.train.device))
    views, images, _ = soft.logits.shape
    print(f"teacher soft labels: {views} views of {images:,} images in {soft.path}")
    return 0
