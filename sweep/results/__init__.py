"""What a study found, for the commands that read it: ``export`` and ``predict``, ``status``,
``dashboard``, and the one-shot ``prune_curve`` of a checkpoint.

Each is an orchestration over the layers below (the search's front and choice of best, the
teacher's checkpoints, training's evaluation, the MLflow layout), so it sits beside
:mod:`runners`, under :mod:`sweep.cli` alone. The modules bring torch, Optuna and MLflow
with them: the commands import them by module path, inside the handler, to keep
``sweep --help`` instant.
"""
