"""Every touch of Optuna below its public API, in one place.

Optuna gives a trial no public id and a study no public storage accessor, yet its own
callbacks (``RetryFailedTrialCallback``) and its storages work by both. Each function here
is the one place sweep reaches for one of them; ``tests/search/test_optuna_internals.py``
checks each against the installed Optuna, so an upgrade that moves one fails there, by name,
instead of deep inside a sweep.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's id in its storage (unlike ``number``, unique across the storage's studies)."""
    return int(trial._trial_id)


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage object a loaded study reads and writes through."""
    return study._storage


def set_system_attr(storage: BaseStorage, trial: int, key: str, value: Any) -> None:
    """Write one of a trial's system attributes (``constraints``, ``fail_reason``...): read
    by Optuna's samplers and optuna-dashboard, never set through a public ``Trial`` method."""
    storage.set_trial_system_attr(trial, key, value)
