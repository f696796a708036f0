"""TAKD's teacher assistant: a mid-sized student distilled from the teacher, then teaching.

Mirzadeh et al. (2020): a student learns more from a teacher closer to its own size. The
assistant is a ``dsconv`` of widths ``w, 2w, 4w`` (``kd.assistant_width``; 128 gives about
0.2M parameters, between the ResNet18's 11M and the 60k student), distilled with Hinton's
loss on the teacher's recipe (``teacher.lr``, ``teacher.weight_decay``, ...), for
``kd.assistant_epochs``. Like the teacher it is trained once per fingerprint of what shapes
it and reused by every trial, under a lock so concurrent workers train it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from sweep.config import KDConfig, TrialConfig
from sweep.data import resolve_root
from sweep.distill.base import TeacherContext
from sweep.models.registry import create_student
from sweep.models.weights import save_state_dict
from sweep.teacher.network import teacher_train_config
from sweep.train import resolve_device, train

# The assistant learns from the teacher with the default Hinton settings, so one assistant
# serves every trial whatever alpha and temperature the trial itself searches.
ASSISTANT_KD = KDConfig(method="hinton")


def assistant_options(width: int) -> dict[str, Any]:
    """The ``dsconv`` options of an assistant of base width ``width``."""
    return {"widths": [width, 2 * width, 4 * width]}


def _assistant_config(cfg: TrialConfig) -> TrialConfig:
    epochs = cfg.kd.assistant_epochs or cfg.train.epochs
    train_cfg = replace(teacher_train_config(cfg.teacher, cfg.train), epochs=epochs)
    return replace(cfg, kd=replace(ASSISTANT_KD, views=cfg.kd.views), train=train_cfg)


def assistant_path(cfg: TrialConfig, num_classes: int, home: Path, teacher_path: Path) -> Path:
    """Where the assistant for this config and teacher file is (or will be) kept."""
    teacher = teacher_path.stat()
    dataset = asdict(cfg.dataset)
    dataset["root"] = str(resolve_root(cfg.dataset, home))
    key = {
        "teacher": [str(teacher_path.resolve()), teacher.st_size, teacher.st_mtime_ns],
        "dataset": dataset,
        "train": asdict(_assistant_config(cfg).train),
        "width": cfg.kd.assistant_width,
        "num_classes": num_classes,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return home / "assistants" / f"dsconv{cfg.kd.assistant_width}-{digest}.ckpt"


def ensure_assistant(cfg: TrialConfig, context: TeacherContext) -> nn.Module:
    """Load the trial's assistant, distilling it from the teacher first if none exists.

    Args:
        cfg: the trial's settings (``kd.assistant_*``, ``teacher.*``, ``dataset.*``).
        context: the :class:`~sweep.search.objective.TrialContext` (teacher, home, data).

    Returns:
        The assistant in eval mode, on the CPU.
    """
    n = context.num_classes
    path = assistant_path(cfg, n, context.home, context.teacher_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            ta_cfg = _assistant_config(cfg)
            data = context.data(ta_cfg)  # with the teacher's cached logits when it has them
            cached = getattr(data.train, "yields_teacher_logits", False)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ta_cfg.train.seed)
                model = create_student("dsconv", n, assistant_options(cfg.kd.assistant_width))
                result = train(
                    model,
                    data,
                    ta_cfg.train,
                    kd=ta_cfg.kd,
                    teacher=None if cached else context.teacher,
                    device=resolve_device(ta_cfg.train.device),
                )
            save_state_dict(result.state_dict, path)
    model = create_student("dsconv", n, assistant_options(cfg.kd.assistant_width))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
