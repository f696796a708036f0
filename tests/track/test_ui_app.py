"""sweep.track.ui_app: MLflow's server, plus the page that opens its UI in Model training."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow.server
import pytest

from sweep.track.ui_app import ASSISTANT_SHOWN_KEY, MACHINE_LEARNING, WORKFLOW_KEY, app
from sweep.track.views import OPEN_PATH, open_link, view_route


def _get(path: str, query: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through the ASGI app: (status, headers, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 5000),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_the_opener_remembers_model_training_then_opens_the_route() -> None:
    route = view_route("7", "sweep-front")
    link = open_link("http://127.0.0.1:5000", route)
    path, _, query = link.removeprefix("http://127.0.0.1:5000").partition("?")
    assert path == OPEN_PATH
    status, headers, body = _get(path, query.encode())
    page = body.decode()
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    # What MLflow's useLocalStorage writes: the JSON of the value, under "<key>_v<version>".
    assert f'localStorage.setItem("{WORKFLOW_KEY}", "\\"{MACHINE_LEARNING}\\"");' in page
    assert f'location.replace("/#{route}");' in page
    # The Assistant is left closed on a first visit only: a browser's own choice stands.
    assert (
        f'if (localStorage.getItem("{ASSISTANT_SHOWN_KEY}") === null) '
        f'localStorage.setItem("{ASSISTANT_SHOWN_KEY}", "true");'
    ) in page


@pytest.mark.parametrize(
    "to", [b"to=%2F%2Fevil.example%2Fx", b"to=https%3A%2F%2Fevil.example", b""]
)
def test_the_opener_goes_nowhere_but_this_ui(to: bytes) -> None:
    _, _, body = _get(OPEN_PATH, to)
    assert 'location.replace("/#/");' in body.decode()


def test_a_route_cannot_end_the_script_early() -> None:
    _, _, body = _get(OPEN_PATH, b"to=%2F%3C%2Fscript%3E%3Cscript%3Ealert(1)")
    assert "</script><script>" not in body.decode()


def test_every_other_request_is_mlflows() -> None:
    status, _, body = _get("/health")
    assert (status, body) == (200, b"OK")


@pytest.mark.parametrize("key", [WORKFLOW_KEY, ASSISTANT_SHOWN_KEY])
def test_mlflows_ui_still_keeps_that_key(key: str) -> None:
    # The keys are MLflow's own (its bundle's useLocalStorage): an upgrade that renames one
    # must fail here, not leave the clicked runs among GenAI pages again.
    bundle = Path(mlflow.server.__file__).parent / "js" / "build" / "static" / "js"
    text = "".join(p.read_text(errors="replace") for p in bundle.glob("main.*.js"))
    name, version = re.fullmatch(r"(.+)_v(\d+)", key).groups()
    assert f'key:"{name}",version:{version}' in text
    assert "`${e}_v${t}`" in text  # how it names the stored key
    assert f'MACHINE_LEARNING="{MACHINE_LEARNING}"' in text


def test_the_app_loads_without_torch() -> None:
    # Each of the server's workers imports it: the tracking package's names load on use.
    code = "import sys, sweep.track.ui_app; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr
