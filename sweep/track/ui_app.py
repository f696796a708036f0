"""The app ``sweep ui`` serves: MLflow's own server, and one page that opens it in Model training.

MLflow 3's UI has two faces, GenAI and Model training, and a browser remembers the one it
last chose (local storage, :data:`WORKFLOW_KEY`); a fresh browser gets GenAI. A link that
says ``workflowType=machine_learning`` opens its own page in Model training but changes
nothing remembered, so the first run clicked in the runs table opened among GenAI pages
("Evaluations", "Judges"). ``/sweep/open?to=<route>`` remembers Model training, as clicking
MLflow's own toggle once does, then goes on to the route: the links ``sweep ui`` prints go
through it (:func:`sweep.track.views.open_link`). On a browser's first visit it also tells
MLflow that its Assistant was opened once already (:data:`ASSISTANT_SHOWN_KEY`), so the chat
panel does not take a quarter of the screen beside the scatter; its button still opens it.

``mlflow server --app-name sweep`` serves this app (the ``mlflow.app`` entry point, as
MLflow's own ``basic-auth`` is served); every other request is MLflow's.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mlflow.server.fastapi_app import app as mlflow_app

from sweep.track.views import OPEN_PATH

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# MLflow's key for the remembered face (useLocalStorage: ``<key>_v<version>``, a JSON value),
# read from MLflow 3.17's bundle; tests/track/test_ui_app.py fails when a release changes it.
WORKFLOW_KEY = "mlflow.workflowType_v1"
MACHINE_LEARNING = "machine_learning"
# MLflow opens its Assistant panel by itself once per browser, then remembers it did.
ASSISTANT_SHOWN_KEY = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"

_PAGE = """<!doctype html>
<meta charset="utf-8"><title>MLflow (sweep)</title>
<script>
localStorage.setItem({key}, {value});
if (localStorage.getItem({assistant}) === null) localStorage.setItem({assistant}, "true");
location.replace({target});
</script>
<noscript>MLflow's UI needs JavaScript: <a href="{href}">open it</a>.</noscript>
"""


def _page(query: bytes) -> bytes:
    route = urllib.parse.parse_qs(query.decode()).get("to", ["/"])[0]
    if not route.startswith("/") or route.startswith("//"):
        route = "/"  # a route of this UI only: never a redirect to another site
    # json.dumps writes JavaScript string literals; "</" cannot end the script early.
    literal = {
        "key": json.dumps(WORKFLOW_KEY),
        "value": json.dumps(json.dumps(MACHINE_LEARNING)),
        "assistant": json.dumps(ASSISTANT_SHOWN_KEY),
        "target": json.dumps(f"/#{route}").replace("</", "<\\/"),
        "href": html.escape(f"/#{route}"),
    }
    return _PAGE.format(**literal).encode()


class _SweepUI:
    """MLflow's ASGI app, with :data:`OPEN_PATH` answered here.

    An object, not a function: MLflow's server calls a function given as the app a factory.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == OPEN_PATH:
            body = _page(scope.get("query_string", b""))
            headers = [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"cache-control", b"no-store"),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await mlflow_app(scope, receive, send)


app = _SweepUI()
