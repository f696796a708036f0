"""``sweep dashboard``: optuna-dashboard on the sweep's own storage and lock.

A journal is written under sweep's ``flock`` (:class:`sweep.search.storage.JournalFlock`),
while ``optuna-dashboard FILE`` would write (notes, deletes) under Optuna's symlink lock: the
two do not exclude each other. ``sweep dashboard`` opens the journal with sweep's lock, so
whatever the dashboard writes is safe while a sweep runs.
"""

from __future__ import annotations

from pathlib import Path

from sweep.paths import default_storage, sweep_home
from sweep.search.storage import open_storage
from sweep.track.dashboard import artifact_dir


def serve_dashboard(
    storage_url: str | None, host: str, port: int, home: Path | None = None
) -> None:
    """Serve optuna-dashboard on the sweep's storage (journal under sweep's lock) until
    stopped, with the study artifacts (the front's picture)."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    home = home or sweep_home()
    storage = open_storage(storage_url or default_storage(home))
    folder = artifact_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"optuna-dashboard at http://{host}:{port}; Ctrl-C stops it", flush=True)
    run_server(storage, host=host, port=port, artifact_store=FileSystemArtifactStore(str(folder)))
