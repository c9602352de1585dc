"""The monitoring service's web dashboard: the page, its assets, and the JSON it polls.

The document per stream is rebuilt by :meth:`Monitor.tick` on the loop thread and
only read here, on the HTTP server's thread (eddy.runtime.server); a fresh dict is
published each tick, so a reader never sees one half-updated. The API is described
in ``dashboard/API.md`` and, for programs, at ``/openapi.json`` (``openapi.py``).

Every route here needs a viewer key once API keys are configured: ``serve_http``
checks it (eddy.runtime.auth), and a browser asks for it (HTTP Basic, the key as the
password) when it opens ``/dashboard``.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from eddy.runtime.server import HttpApi
from eddy.services.monitoring import openapi
from eddy.services.monitoring.handlers import Monitor

ASSETS = Path(__file__).parent / "dashboard"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "application/javascript", ".css": "text/css"}


def dashboard_api(monitors: dict[str, Monitor]) -> HttpApi:
    """The dashboard for ``eddy.runtime.service.bootstrap``: its routes and their OpenAPI description."""
    return HttpApi("eddy monitoring dashboard", dashboard_routes(monitors), openapi.PATHS, openapi.SCHEMAS)


def dashboard_routes(monitors: dict[str, Monitor]) -> list[web.RouteDef]:
    """``/dashboard`` (the page and its assets) and ``/api/*`` (its JSON), all GET (viewer)."""

    def asset(name: str) -> Handler:
        path = ASSETS / name

        async def serve(_request: web.Request) -> web.StreamResponse:
            return web.Response(body=path.read_bytes(), headers={"Content-Type": CONTENT_TYPES[path.suffix]})

        return serve

    async def streams(_request: web.Request) -> web.StreamResponse:
        return _json(200, {"streams": sorted(monitors)})

    async def document(request: web.Request) -> web.StreamResponse:
        stream = request.query.get("stream") or next(iter(sorted(monitors)), "")
        monitor = monitors.get(stream)
        if monitor is None:
            known = ", ".join(sorted(monitors))
            return _json(404, {"error": f"unknown stream {stream!r}; known: {known}", "status": 404})
        doc = monitor.document or {"stream": stream, "task": monitor.contract.task, "warming_up": True}
        # A document is large (every series of the window): encoded off the event loop, so /healthz never waits.
        body = await asyncio.to_thread(_encoded, doc)
        return web.Response(body=body, content_type="application/json")

    return [
        web.get("/dashboard", asset("index.html")),
        web.get("/dashboard/", asset("index.html")),
        web.get("/dashboard/app.js", asset("app.js")),
        web.get("/dashboard/style.css", asset("style.css")),
        web.get("/api/streams", streams),
        web.get("/api/dashboard", document),
    ]


def _encoded(doc: Any) -> bytes:
    return json.dumps(_finite(doc)).encode()


def _json(status: int, doc: Any) -> web.Response:
    return web.Response(body=_encoded(doc), status=status, content_type="application/json")


def _finite(value: Any) -> Any:
    """NaN and infinities (an R² of a constant window, say) as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
