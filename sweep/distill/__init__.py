"""Knowledge distillation: losses, temperature schedules, the distillers by kd.method.

What a training step asks of distillation, and nothing more: the teacher itself (building,
training, storing it, its soft labels, TAKD's assistant) is :mod:`sweep.teacher`, a layer
above :mod:`sweep.train`."""

from sweep.distill.base import DistillBatch, Distiller, distiller_class, register_distiller
from sweep.distill.distillers import make_distiller, replays_soft_labels, trial_teacher
from sweep.distill.losses import distillation_loss
from sweep.distill.methods import dml_loss, kd_method, method_loss, register_kd_method
from sweep.distill.temperature import register_temperature_schedule, temperature_at

__all__ = [
    "DistillBatch",
    "Distiller",
    "distillation_loss",
    "distiller_class",
    "dml_loss",
    "kd_method",
    "make_distiller",
    "method_loss",
    "register_distiller",
    "register_kd_method",
    "register_temperature_schedule",
    "replays_soft_labels",
    "temperature_at",
    "trial_teacher",
]
