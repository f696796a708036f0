"""The docker-compose stack, read as data: services, ordering, GPUs, ports, secrets, image.

No Docker engine is needed: docker-compose.yml is parsed with PyYAML and checked against
what the stack promises (docs/deploy.md, "Run a sweep on the docker-compose stack"). Where a
Compose CLI exists, ``docker compose config`` validates the file as Compose itself reads it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "runners" / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
INIT_SCRIPT = REPO / "runners" / "postgres-init" / "create-databases.sh"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, $NAME;
# "$$" is Compose's escape for a literal "$" (expanded later, inside the container).
VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
SECRETS = ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")


def _variables(text: str) -> list[re.Match[str]]:
    return list(VARIABLE.finditer(text.replace("$$", "")))


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation, for the cases this file uses: values from env, else defaults."""

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name in env:
            return env[name]
        if match["op"] and match["op"].lstrip(":") == "-":
            return match["arg"]
        return ""

    return VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_the_stack_has_its_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "minio", "minio-init", "mlflow", "worker"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["minio"]["image"].startswith("quay.io/minio/minio:RELEASE.")
    assert services["minio-init"]["image"].startswith("quay.io/minio/mc:RELEASE.")
    for name in ("mlflow", "worker"):
        build = services[name]["build"]
        assert build["dockerfile"] == "runners/Dockerfile" and build["context"] == "."
    # One image for both: the MLflow server and its clients run the same MLflow release.
    assert services["mlflow"]["image"] == services["worker"]["image"]


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} floats"


def test_worker_reserves_gpus_and_scales(services: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    gpu = devices[0]
    assert gpu["driver"] == "nvidia"
    assert "gpu" in gpu["capabilities"]
    assert gpu.get("count", "all") == "all" or int(gpu["count"]) >= 1
    # --scale worker=N needs replicas that differ in name and bind no host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker
    # Started only when named, so a bare `docker compose up` brings up the services alone.
    assert worker["profiles"] == ["workers"]


def test_worker_joins_the_study_on_the_stack(services: dict[str, Any]) -> None:
    worker = services["worker"]
    command = worker["command"]
    assert command[0] == "worker"
    assert any(arg.startswith("--study=${SWEEP_STUDY") for arg in command)
    storage = next(arg for arg in command if arg.startswith("--storage="))
    resolved = _interpolate(storage, {"POSTGRES_PASSWORD": "pw"})
    assert resolved == "--storage=postgresql://sweep:pw@postgres:5432/optuna"
    env = _env(worker)
    assert _interpolate(env["MLFLOW_TRACKING_URI"], {}) == "http://mlflow:5000"
    assert env["SWEEP_HOME"] == "/cache"
    volumes = worker["volumes"]
    assert any(v.endswith(":/data:ro") and "${SWEEP_DATA" in v for v in volumes)
    assert any(v.startswith("sweep-cache:") for v in volumes)


def test_mlflow_server_uses_postgres_and_minio(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    assert mlflow["entrypoint"] == ["mlflow"]
    command = mlflow["command"]
    assert command[0] == "server"
    assert "--serve-artifacts" in command
    destination = next(a for a in command if a.startswith("--artifacts-destination="))
    assert _interpolate(destination, {}) == "--artifacts-destination=s3://sweep-artifacts/"
    assert "--host=0.0.0.0" in command and "--port=5000" in command
    env = _env(mlflow)
    # `mlflow server` reads --backend-store-uri from this variable.
    backend = _interpolate(env["MLFLOW_BACKEND_STORE_URI"], {"POSTGRES_PASSWORD": "pw"})
    assert backend == "postgresql://sweep:pw@postgres:5432/mlflow"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    allowed = _interpolate(env["MLFLOW_SERVER_ALLOWED_HOSTS"], {}).split(",")
    assert "mlflow:5000" in allowed, "workers reach the server as mlflow:5000"


def test_minio_init_creates_the_bucket(services: dict[str, Any]) -> None:
    init = services["minio-init"]
    script = " ".join(init["command"])
    assert "mc mb --ignore-existing" in script
    assert "$SWEEP_BUCKET" in script
    assert init.get("restart") == "no"


def test_healthchecks_on_the_servers(services: dict[str, Any]) -> None:
    for name, probe in {
        "postgres": "pg_isready",
        "minio": "mc ready local",
        "mlflow": "/health",
    }.items():
        check = services[name]["healthcheck"]
        test = check["test"]
        text = test if isinstance(test, str) else " ".join(test)
        assert probe in text, f"{name}: {text}"
        assert check["retries"] >= 3


def test_start_order_waits_for_readiness(services: dict[str, Any]) -> None:
    assert _depends(services["minio-init"]) == {"minio": "service_healthy"}
    assert _depends(services["mlflow"]) == {
        "postgres": "service_healthy",
        "minio-init": "service_completed_successfully",
    }
    assert _depends(services["worker"]) == {
        "postgres": "service_healthy",
        "mlflow": "service_healthy",
    }
    # Every service_healthy target has a healthcheck to pass.
    for service in services.values():
        for target, condition in _depends(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[target], target


def test_published_ports_bind_to_loopback_by_default(services: dict[str, Any]) -> None:
    published = 0
    for name, service in services.items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), f"{name}: use the short form with a host address"
            published += 1
            # "${SWEEP_BIND:-127.0.0.1}:${PORT:-5432}:5432" with no .env is 127.0.0.1:...
            host = _interpolate(entry, {}).split(":")[0]
            assert host == "127.0.0.1", f"{name}: {entry} binds to {host!r} by default"
    assert published == 3  # PostgreSQL, the MinIO console, MLflow


def test_every_variable_is_documented_in_env_example(raw: str) -> None:
    documented = set(
        re.findall(r"^\s*#?\s*([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)
    )
    used = {m["braced"] or m["bare"] for m in _variables(raw)}
    assert used, "the compose file takes its settings from .env"
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"


def test_secrets_are_required_and_never_written_in(raw: str, services: dict[str, Any]) -> None:
    for match in _variables(raw):
        name = match["braced"] or match["bare"]
        if name in SECRETS:
            assert match["op"] == ":?", f"{name} must be required: {match[0]}"
    # Every credential in a URL comes from a variable: with the secrets set to markers,
    # each URL's password is a marker.
    markers = {name: f"<{name}>" for name in SECRETS}
    credentials = re.findall(r"://[^:/@\s]+:([^@\s]+)@", _interpolate(raw, markers))
    assert len(credentials) >= 2  # MLflow's backend store, the workers' Optuna storage
    for secret in credentials:
        assert secret in markers.values(), f"literal credential {secret!r} in a URL"
    # Every password/secret/key setting is a variable, not a value.
    for name, service in services.items():
        for key, value in _env(service).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{name}.{key}={value}"


def test_env_example_holds_placeholders_only() -> None:
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert "change-me" in values[name], f"{name} in .env.example is not a placeholder"
    assert len(values["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter ones
    assert values["SWEEP_BIND"] == "127.0.0.1"


def test_dot_env_is_ignored_by_git_and_docker() -> None:
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", ".env"], cwd=REPO, capture_output=True
        )
        assert ignored.returncode == 0, ".env is not ignored by git"
        example = subprocess.run(
            ["git", "check-ignore", "-q", ".env.example"], cwd=REPO, capture_output=True
        )
        assert example.returncode == 1, ".env.example must stay committable"
    else:
        lines = (REPO / ".gitignore").read_text().splitlines()
        assert ".env" in [line.strip() for line in lines]
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".venv", "sweep-runs", "data", ".git", "**/*.ckpt"):
        assert entry in dockerignore, f".dockerignore lacks {entry}"


def test_init_script_creates_both_databases() -> None:
    mounted = "./runners/postgres-init:/docker-entrypoint-initdb.d:ro"
    assert mounted in yaml.safe_load(COMPOSE.read_text())["services"]["postgres"]["volumes"]
    text = INIT_SCRIPT.read_text()
    loop = re.search(r"for database in ([a-z ]+); do", text)
    assert loop is not None and loop[1].split() == ["optuna", "mlflow"]
    assert INIT_SCRIPT.stat().st_mode & 0o111, "the init script must be executable"
    # tests/test_postgres_topology.py runs it against a real server.


def test_dockerfile_is_slim_pinned_and_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if re.match(r"[A-Z]", line)]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert re.search(r"pip install torch==2\.14\.1 torchvision==0\.29\.1\b", text)
    users = [rest.strip() for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    copied = [src for word, rest in instructions if word == "COPY" for src in rest.split()[:-1]]
    assert {"sweep", "runners"} <= set(copied)
    missing = [src for src in copied if not (REPO / src).exists()]
    assert not missing, f"COPY sources missing from the build context: {missing}"
    assert not any(
        word in ("ARG", "ENV") and re.search(r"PASSWORD|SECRET", rest)
        for word, rest in instructions
    ), "no secrets in the image"
    # The entrypoint is the CLI the compose file's worker command continues.
    assert 'ENTRYPOINT ["sweep"]' in text


def test_compose_config_validates() -> None:
    """``docker compose config`` accepts the file, given the example settings."""
    # Compose v2 only: the retired v1 (`docker-compose` 1.x) refuses the top-level `name`.
    if not (shutil.which("docker") and _succeeds(["docker", "compose", "version"])):
        pytest.skip("no Compose v2 CLI here (`docker compose`); the YAML checks above stand")
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE)]
        + ["config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
