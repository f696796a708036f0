"""Checks made before any study or run exists, so bad input changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sweep.compress.plan import check_schedule, sampler_count
from sweep.data import dataset_num_classes, resolve_root
from sweep.errors import ConfigError, SweepError
from sweep.models.registry import validate_student_options
from sweep.search.samplers import make_pruner, make_sampler
from sweep.search.space import SearchSpace


@dataclass(frozen=True)
class Preflight:
    """What the checks learned: the data's class count and the smallest model's size."""

    num_classes: int
    data_root: Path
    smallest_params: int


def preflight(space: SearchSpace, home: Path) -> Preflight:
    """Validate a space against the data, the teacher file and the budget.

    Raises:
        SweepError: naming the file and key: data folder, teacher checkpoint, student
            options, or a space in which no model fits the budget.
    """
    base = space.defaults
    make_sampler(space)
    make_pruner(space)
    try:
        data_root = resolve_root(base.dataset, home)
        num_classes = dataset_num_classes(base.dataset, home)
    except SweepError as exc:
        raise SweepError(f"{space.source}: {exc}") from None
    if base.kd.teacher_mode == "cached" and not base.dataset.cache:
        raise ConfigError(
            space.source,
            "kd.teacher_mode",
            "cached soft labels replay the decoded cache's augmentation; set "
            "dataset.cache: true or kd.teacher_mode: online",
        )
    checkpoint = base.teacher.checkpoint
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise ConfigError(space.source, "teacher.checkpoint", f"{checkpoint}: no such file")

    counts: dict[str, int] = {}  # corners differing only in training settings count once
    for chosen in space.corner_values():
        cfg = space.trial_config(chosen)
        try:
            validate_student_options(cfg.student.family, cfg.student.options, space.source)
        except ConfigError as exc:
            raise ConfigError(space.source, exc.key, exc.problem) from None
        check_schedule(cfg, space.source)
        # Channel counts do not depend on the importance criterion.
        prune = replace(cfg.prune, importance="magnitude")
        key = repr((cfg.student, prune, cfg.lowrank, cfg.budget))
        if key not in counts:
            counts[key] = sampler_count(cfg, num_classes)
    smallest = min(counts.values())
    if smallest > base.budget.max_params:
        raise ConfigError(
            space.source,
            "budget.max_params",
            f"no model in this space fits {base.budget.max_params:,} parameters "
            f"(the smallest has {smallest:,}); lower the widths' low ends",
        )
    return Preflight(num_classes=num_classes, data_root=data_root, smallest_params=smallest)
