"""How trials execute: worker processes on this host or others, and the pool that runs them.

``sweep run --workers N`` (or ``--gpus all --workers-per-gpu K``) calls
:func:`runners.pool.run_pool`; ``sweep worker --study NAME --storage URL`` calls
:func:`runners.worker.run_worker`. Those two modules bring torch, Optuna and MLflow with
them, so importing the pool's options from here stays light.
"""

from runners.slots import PoolOptions, Slot, parse_gpus, plan_slots

__all__ = ["PoolOptions", "Slot", "parse_gpus", "plan_slots"]
