"""The study as optuna-dashboard shows it: the front as a study artifact (``sweep dashboard``,
which serves the dashboard, is :mod:`sweep.results.dashboard`).

The objective's name (``val_acc``) and the budget constraint are set on the study and its
trials by :mod:`sweep.search.study` and :mod:`sweep.search.objective`; here the picture the
dashboard cannot draw for a single objective, accuracy against parameters, is uploaded as an
artifact of the study (Optuna's own artifact API), which the dashboard lists and shows.

"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.records import TrialRecord

if TYPE_CHECKING:  # optuna is imported when a front is uploaded, not with this module
    import optuna

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
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from sweep.track.plots import front_figure

    folder = artifact_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    figure = front_figure(list(records), list(front), max_params, study.study_name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FRONT_ARTIFACT
        figure.savefig(path, dpi=100)
        return upload_artifact(
            artifact_store=FileSystemArtifactStore(str(folder)),
            file_path=str(path),
            study_or_trial=study,
            mimetype="image/png",
        )
