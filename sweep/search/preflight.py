"""Checks made before any study or run exists, so bad input changes nothing.

Nothing here writes: the demo data set is built later, once the storage and the tracking
server have answered too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sweep.compress.plan import check_schedule, sampler_count
from sweep.data.folders import check_readable
from sweep.data.loaders import planned_num_classes
from sweep.errors import CheckpointError, ConfigError, SweepError
from sweep.models.registry import validate_student_options
from sweep.search.samplers import make_pruner, make_sampler
from sweep.search.space import SearchSpace
from sweep.teacher.network import load_teacher


@dataclass(frozen=True)
class Preflight:
    """What the checks learned: the data's class count and the smallest model's size."""

    num_classes: int
    smallest_params: int


def preflight(space: SearchSpace, home: Path) -> Preflight:
    """Validate a space against the data, the teacher file and the budget, writing nothing.

    Raises:
        SweepError: naming the file and key: data folder (missing, or no image decodes),
            teacher checkpoint (missing, unreadable, another architecture, holding code),
            student options, or a space in which no model fits the budget.
    """
    base = space.defaults
    make_sampler(space)
    make_pruner(space)
    if base.kd.teacher_mode == "cached" and not base.dataset.cache:
        raise ConfigError(
            space.source,
            "kd.teacher_mode",
            "cached soft labels replay the decoded cache's augmentation; set "
            "dataset.cache: true or kd.teacher_mode: online",
        )
    try:
        num_classes = planned_num_classes(base.dataset, home)  # the demo is not written yet
        if base.dataset.root:
            for split in ("training", "validation"):  # a trial reads both
                check_readable(Path(base.dataset.root).expanduser(), split)
    except SweepError as exc:
        raise SweepError(f"{space.source}: {exc}") from None
    checkpoint = base.teacher.checkpoint
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise ConfigError(
                space.source, "teacher.checkpoint", f"{checkpoint}: is a folder, not a file"
            )
        if not path.is_file():
            raise ConfigError(space.source, "teacher.checkpoint", f"{checkpoint}: no such file")
        try:  # a truncated file, another architecture or a pickle of code: refused now
            load_teacher(path, num_classes)
        except CheckpointError as exc:
            raise ConfigError(space.source, "teacher.checkpoint", str(exc)) from None

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
    return Preflight(num_classes=num_classes, smallest_params=smallest)
