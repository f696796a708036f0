"""Real services for tests: a throwaway PostgreSQL server and an MLflow tracking server.

Both listen on 127.0.0.1 only, on free ports, and keep everything in a temporary folder.
PostgreSQL comes from the machine's own binaries (``initdb``, ``pg_ctl``: Debian's
``postgresql`` package, which ``.ci/run`` installs); a missing binary is an error, never a
skip. ``initdb`` refuses to run as root, so under root the server runs as the ``postgres``
user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
# The compose stack's first-start script; tests run it against the real server too.
INIT_SCRIPT = REPO / "runners" / "postgres-init" / "create-databases.sh"
_DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_SERVER_USER = "postgres"  # the OS user that runs the server when we are root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``.

    Looks on PATH first (following links, so the folder also holds ``psql`` of the same
    version), then in Debian's ``/usr/lib/postgresql/<version>/bin``, newest first.

    Raises:
        FileNotFoundError: no PostgreSQL server binaries on this machine.
    """
    on_path = shutil.which("initdb")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    found = [Path(p) for p in glob.glob(_DEBIAN_BIN_GLOB) if (Path(p) / "initdb").exists()]
    if found:
        return max(found, key=lambda p: _version_key(p.parent.name))
    raise FileNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not on PATH nor in "
        f"{_DEBIAN_BIN_GLOB}; install them with `apt-get install postgresql` "
        "(.ci/run does this before the tests)"
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


@dataclass
class PostgresServer:
    """A running PostgreSQL server in a temporary folder.

    Attributes:
        root: the folder holding the data directory, the socket and the log.
        bin_dir: where its binaries are.
        port: its TCP port on 127.0.0.1.
        user: the password login role that owns the databases.
        password: that role's password.
        run_as: the OS user running the server, or None for the current user.
    """

    root: Path
    bin_dir: Path
    port: int
    user: str
    password: str
    run_as: str | None

    @property
    def socket_dir(self) -> Path:
        """The Unix-socket folder (superuser access, trusted; TCP needs the password)."""
        return self.root / "sockets"

    @property
    def log_path(self) -> Path:
        """The server's log."""
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        """An SQLAlchemy URL for a database, over TCP with the role's password."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def databases(self) -> list[str]:
        """Names of the non-template databases on the server."""
        with self._superuser() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
            return sorted(row[0] for row in cursor.fetchall())

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        try:
            _run_as(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast"]
                + ["-w", "-t", "30", "stop"],
                self.run_as,
                cwd=self.root,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _kill_postmaster(self.root / "data")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def _superuser(self) -> Iterator[psycopg.Connection]:
        conn = psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        )
        try:
            yield conn
        finally:
            conn.close()


def start_postgres(user: str = "sweep") -> PostgresServer:
    """Initialise and start a PostgreSQL server on 127.0.0.1 and a free port.

    The server has a superuser ``postgres`` reachable only through its Unix socket, and a
    login role ``user`` with a random password and the right to create databases, reachable
    over TCP with that password (scram-sha-256), as the compose stack's role is.

    Args:
        user: name of the password role.

    Returns:
        The running server; call ``stop()`` when done.

    Raises:
        FileNotFoundError: no PostgreSQL binaries (see ``postgres_bin_dir``).
        RuntimeError: the server did not initialise or start; the message holds its log.
    """
    bin_dir = postgres_bin_dir()
    run_as = _server_user()
    # Not under pytest's tmp_path: that folder is private to its owner (0700), and the
    # server may run as another user.
    root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    (root / "sockets").mkdir()
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (root, root / "sockets"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    server = PostgresServer(root, bin_dir, port, user, secrets.token_hex(12), run_as)
    try:
        _run_as(
            [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres"]
            + ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]
            + ["--locale=C", "--no-sync"],
            run_as,
            cwd=root,
        )
        # Test-only settings: durability is worthless for a throwaway database.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root / 'sockets'} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run_as(
            [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(server.log_path)]
            + ["-w", "-t", "60", "-o", options, "start"],
            run_as,
            cwd=root,
        )
        with server._superuser() as conn, conn.cursor() as cursor:
            # Utility statements take no bound parameters; sql.Literal quotes the password.
            cursor.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(server.password)
                )
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, psycopg.Error) as exc:
        output = getattr(exc, "stdout", "") or ""
        log = server.log_tail()
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {exc}\n{output}\n{log}") from None
    return server


def create_databases(server: PostgresServer, script: Path = INIT_SCRIPT) -> None:
    """Run the compose stack's first-start script against the server.

    The script gets what the postgres image gives it (``POSTGRES_USER``, ``psql`` on PATH)
    plus the socket and port of this server.
    """
    env = {
        **os.environ,
        "PATH": f"{server.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "POSTGRES_USER": server.user,
        "PGHOST": str(server.socket_dir),
        "PGPORT": str(server.port),
    }
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed ({result.returncode}):\n{result.stderr}")


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """Terminate the server and its worker processes."""
        _stop_group(self.process)


def start_mlflow(
    backend_store_uri: str, folder: Path, timeout: float = 120.0, workers: int = 1
) -> MlflowServer:
    """Start ``mlflow server`` on 127.0.0.1 and a free port, proxying artifacts to a folder.

    Args:
        backend_store_uri: the tracking database (``postgresql://...``).
        folder: where its log and ``artifacts/`` (``--artifacts-destination``) go.
        timeout: seconds to wait for ``/health`` to answer.
        workers: server worker processes.

    Returns:
        The running server; call ``stop()`` when done.

    Raises:
        RuntimeError: it exited or did not answer in time; the message holds its output.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / "mlflow-server.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow if mlflow.exists() else "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--serve-artifacts",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["GIT_PYTHON_REFRESH"] = "quiet"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2):
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            state = (
                f"exited with {process.returncode}"
                if process.poll() is not None
                else (f"did not answer /health in {timeout:.0f} s")
            )
            server.stop()
            raise RuntimeError(f"mlflow server {state}; its output:\n{server.log_tail()}")
        time.sleep(0.5)


def wait_all(processes: Mapping[str, subprocess.Popen], timeout: float) -> dict[str, int | None]:
    """Wait for processes until a shared deadline; the ones still running are stopped.

    Returns:
        Each name's exit code, None for one that had to be stopped.
    """
    deadline = time.monotonic() + timeout
    codes: dict[str, int | None] = {}
    for name, process in processes.items():
        try:
            codes[name] = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop_group(process)
            codes[name] = None
    return codes


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        raise FileNotFoundError(
            f"running as root, and there is no {_SERVER_USER!r} user to run PostgreSQL "
            "as (initdb refuses root); Debian's postgresql package creates it"
        ) from None
    return _SERVER_USER


def _run_as(command: Sequence[str], user: str | None, cwd: Path) -> None:
    subprocess.run(
        list(command),
        user=user,
        cwd=cwd,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )


def _kill_postmaster(data_dir: Path) -> None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown
    except ProcessLookupError:
        pass


def _stop_group(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
