"""The study as optuna-dashboard shows it: the front as a study artifact, and ``sweep
dashboard``, which serves the dashboard on the sweep's own storage and lock.

The objective's name (``val_acc``) and the budget constraint are set on the study and its
trials by :mod:`sweep.search.study` and :mod:`sweep.search.objective`; here the picture the
dashboard cannot draw for a single objective, accuracy against parameters, is uploaded as an
artifact of the study (Optuna's own artifact API), which the dashboard lists and shows.

A journal is written under sweep's ``flock`` (:class:`sweep.search.storage.JournalFlock`),
while ``optuna-dashboard FILE`` would write (notes, deletes) under Optuna's symlink lock: the
two do not exclude each other. ``sweep dashboard`` opens the journal with sweep's lock, so
whatever the dashboard writes is safe while a sweep runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.paths import default_storage, sweep_home

if TYPE_CHECKING:  # at run time search imports this module, not the other way round
    import optuna

    from sweep.search.pareto import TrialRecord

FRONT_ARTIFACT = "pareto.png"


def artifact_dir(home: Path) -> Path:
    """Where the study artifacts (the front's picture) are kept, for ``--artifact-dir``."""
    return home / "optuna-artifacts"


def upload_front(
    study: optuna.Study,
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    max_params: int,
    home: Path,
) -> str:
    """Upload the accuracy-vs-parameters picture as an artifact of the study; its id."""
    import matplotlib.pyplot as plt
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from sweep.track.plots import front_figure

    folder = artifact_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    figure = front_figure(list(records), list(front), max_params, study.study_name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / FRONT_ARTIFACT
            figure.savefig(path, dpi=100)
            return upload_artifact(
                artifact_store=FileSystemArtifactStore(str(folder)),
                file_path=str(path),
                study_or_trial=study,
                mimetype="image/png",
            )
    finally:
        plt.close(figure)


def serve_dashboard(
    storage_url: str | None, host: str, port: int, home: Path | None = None
) -> None:
    """Serve optuna-dashboard on the sweep's storage (journal under sweep's lock) until
    stopped, with the study artifacts (the front's picture)."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from sweep.search.storage import open_storage

    home = home or sweep_home()
    storage = open_storage(storage_url or default_storage(home))
    folder = artifact_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"optuna-dashboard at http://{host}:{port}; Ctrl-C stops it", flush=True)
    run_server(storage, host=host, port=port, artifact_store=FileSystemArtifactStore(str(folder)))
