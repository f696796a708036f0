"""sweep.search.optuna_internals: each touch of Optuna's internals still holds in the
installed Optuna. A failure here names what an upgrade moved."""

from __future__ import annotations

import optuna
from optuna.storages import InMemoryStorage

from sweep.search.optuna_internals import set_system_attr, study_storage, trial_id


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=InMemoryStorage(), study_name="internals")


def test_trial_id_is_the_storages_id_for_live_and_frozen_trials() -> None:
    study = _study()
    other = optuna.create_study(storage=study_storage(study), study_name="other")
    other.ask()  # the second study's trial takes id 0: ids are the storage's, not the study's
    live = study.ask()
    frozen = study.trials[0]
    assert trial_id(live) == trial_id(frozen) == 1
    assert study_storage(study).get_trial(trial_id(live)).number == live.number == 0


def test_study_storage_is_the_object_the_study_writes_through() -> None:
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="same")
    assert study_storage(study) is storage
    assert study_storage(optuna.load_study(study_name="same", storage=storage)) is storage


def test_a_system_attr_is_what_optuna_reads_back_as_constraints() -> None:
    study = _study()
    trial = study.ask()
    set_system_attr(study_storage(study), trial_id(trial), "constraints", [-3.0])
    study.tell(trial, 0.5)
    frozen = study.trials[0]
    assert frozen.system_attrs["constraints"] == [-3.0]
    # Optuna 5 reads the list form (what optuna-dashboard 0.21 shows) as constraint "0".
    assert frozen.constraints == {"0": -3.0}
