"""Compression: the exact plan of a trial's final size, and the stages that reach it.

``plan`` (the final parameter count, known before training), ``stages`` (what runs during
training), ``prune`` (structured and unstructured), ``lowrank`` (SVD factorization),
``quantize`` (int8), ``prune_curve`` (accuracy and latency against parameters)."""

from sweep.compress.lowrank import factorize_model
from sweep.compress.plan import Plan, build_planned, plan_trial
from sweep.compress.prune import make_permanent, structured_pruner, unstructured_prune
from sweep.compress.stages import Stage, make_stages

__all__ = [
    "Plan",
    "Stage",
    "build_planned",
    "factorize_model",
    "make_permanent",
    "make_stages",
    "plan_trial",
    "structured_pruner",
    "unstructured_prune",
]
