"""The monitoring service's web dashboard: the page, its assets, and the JSON it polls.

The document per stream is rebuilt by :meth:`Monitor.tick` on the loop thread and
only read here, on the HTTP server's threads; a fresh dict is published each tick,
so a reader never sees one half-updated. The API is described in ``dashboard/API.md``.

Every route here needs a viewer key once API keys are configured: ``serve_http``
checks it (eddy.runtime.auth), and a browser asks for it (HTTP Basic, the key as the
password) when it opens ``/dashboard``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from eddy.runtime.observability import Route
from eddy.services.monitoring.handlers import Monitor

ASSETS = Path(__file__).parent / "dashboard"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "application/javascript", ".css": "text/css"}


def dashboard_routes(monitors: dict[str, Monitor]) -> dict[str, Route]:
    """Routes for :func:`eddy.runtime.observability.serve_http`: ``/dashboard`` and ``/api/*``, all GET (viewer)."""

    def asset(name: str) -> Route:
        def serve(_params: dict[str, str]) -> tuple[int, str, bytes]:
            path = ASSETS / name
            return 200, CONTENT_TYPES[path.suffix], path.read_bytes()

        return serve

    def streams(_params: dict[str, str]) -> tuple[int, str, bytes]:
        return _json(200, {"streams": sorted(monitors)})

    def document(params: dict[str, str]) -> tuple[int, str, bytes]:
        stream = params.get("stream") or next(iter(sorted(monitors)), "")
        monitor = monitors.get(stream)
        if monitor is None:
            return _json(404, {"error": f"unknown stream {stream!r}; known: {', '.join(sorted(monitors))}"})
        return _json(200, monitor.document or {"stream": stream, "task": monitor.contract.task, "warming_up": True})

    return {
        "/dashboard": asset("index.html"),
        "/dashboard/": asset("index.html"),
        "/dashboard/app.js": asset("app.js"),
        "/dashboard/style.css": asset("style.css"),
        "/api/streams": streams,
        "/api/dashboard": document,
    }


def _json(status: int, doc: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(_finite(doc)).encode()


def _finite(value: Any) -> Any:
    """NaN and infinities (an R² of a constant window, say) as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
