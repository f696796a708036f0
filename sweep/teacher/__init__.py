"""The teacher: the ResNet18 (build, load, train from scratch), the store that trains it once
per setting, its soft labels, TAKD's assistant distilled from it, and the data a trial reads.

It trains through :mod:`sweep.train` and logs its own MLflow run through :mod:`sweep.track`,
so it sits above both; the search asks it for a study's teacher and a trial's data.
"""

from sweep.teacher.assistant import ensure_assistant
from sweep.teacher.checkpoints import load_checkpoint_model
from sweep.teacher.network import build_teacher, load_teacher, teacher_train_config, train_teacher
from sweep.teacher.soft_labels import SoftLabels, soft_labels
from sweep.teacher.store import ensure_teacher, teacher_path
from sweep.teacher.trial_data import study_soft_labels, trial_data, uses_cached_teacher

__all__ = [
    "SoftLabels",
    "build_teacher",
    "ensure_assistant",
    "ensure_teacher",
    "load_checkpoint_model",
    "load_teacher",
    "soft_labels",
    "study_soft_labels",
    "teacher_path",
    "teacher_train_config",
    "train_teacher",
    "trial_data",
    "uses_cached_teacher",
]
