"""The search: spaces, samplers and budget repair, the study, its objective, the front.

One module per idea: ``space`` (the YAML, parsed once), ``params`` (its Optuna distributions),
``samplers`` and ``repair`` (proposals that fit the budget), ``preflight`` (checks before
anything is written), ``storage``, ``study`` (open, resume, publish the front),
``objective`` (the only place a trial meets training), ``pareto`` and ``best``."""

from sweep.search.best import load_trial_model, register_best
from sweep.search.objective import Objective, TrialContext
from sweep.search.pareto import best_trial, pareto_front
from sweep.search.preflight import preflight
from sweep.search.samplers import make_pruner, make_sampler
from sweep.search.space import SearchSpace, load_space, parse_space
from sweep.search.storage import open_storage
from sweep.search.study import SweepSession, SweepSummary, open_study, open_sweep, read_study

__all__ = [
    "Objective",
    "SearchSpace",
    "SweepSession",
    "SweepSummary",
    "TrialContext",
    "best_trial",
    "load_space",
    "load_trial_model",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "open_sweep",
    "pareto_front",
    "parse_space",
    "preflight",
    "read_study",
    "register_best",
]
