"""eddy's one HTTP server stack: an aiohttp application served by a thread with its own event loop.

A service's stream loop blocks its main thread; its HTTP server therefore runs beside it, in a daemon
thread of its own with its own asyncio loop (:class:`HttpServer`), so neither waits for the other. A route
whose work blocks (the model registry's SQLite and Kafka acknowledgements) runs it in that loop's thread
pool (``asyncio.to_thread``), never on the loop: ``/healthz`` and ``/metrics`` answer while it works.

:func:`serve_http` is what every service built on ``eddy.runtime.service`` serves: ``/healthz``,
``/metrics``, ``/openapi.json`` and the routes of its :class:`HttpApi` (the model registry's REST API, the
monitoring dashboard), those behind API keys (:func:`eddy.runtime.http.api_keys`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from eddy.runtime import openapi
from eddy.runtime.auth import ApiKeys
from eddy.runtime.http import api_keys, json_errors, ops_routes
from eddy.runtime.observability import Health

log = logging.getLogger(__name__)

# The largest request body an API of serve_http takes; a larger one is answered 413.
MAX_POST_BYTES = 1_000_000
# Requests in flight get this long to finish when a server stops.
SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HttpApi:
    """What a service serves beside ``/healthz`` and ``/metrics``: its routes and their OpenAPI description.

    ``paths`` are the OpenAPI path items of ``routes`` (every route must have one: the tests check it),
    ``schemas`` the components they refer to as ``#/components/schemas/NAME``.

    >>> async def hello(_request: web.Request) -> web.Response:
    ...     return web.json_response({"hello": "world"})
    >>> api = HttpApi("hello", [web.get("/api/hello", hello)], {"/api/hello": {"get": {"responses": {}}}})
    >>> [route.path for route in api.routes]  # type: ignore[attr-defined]
    ['/api/hello']
    """

    title: str
    routes: Sequence[web.RouteDef]
    paths: dict[str, Any]
    schemas: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def service_app(health: Health, api: HttpApi | None = None, keys: ApiKeys | None = None) -> web.Application:
    """The application :func:`serve_http` serves: ``/healthz``, ``/metrics``, ``/openapi.json``, and ``api``.

    ``api``'s routes need an API key when ``keys`` (by default those of :meth:`ApiKeys.from_env`) are
    configured: the viewer role to GET, operator for anything else (see eddy.runtime.auth); a handler
    finds the key's identity with :func:`eddy.runtime.http.identity`. ``/healthz``, ``/metrics`` and
    ``/openapi.json`` are always open: Kubernetes probes and Prometheus use them without a key, and none
    reveals a record.

    >>> app = service_app(Health("doc"), keys=ApiKeys())
    >>> sorted({route.resource.canonical for route in app.router.routes() if route.resource is not None})
    ['/healthz', '/metrics', '/openapi.json']
    """
    # Loaded only for a server with an API, so a bad key setting stops that service, not every one.
    guard = keys if keys is not None else (ApiKeys.from_env() if api is not None else ApiKeys())
    title = api.title if api is not None else f"eddy {health.service}"
    doc = openapi.document(
        title,
        api.description if api is not None else f"Health and metrics of eddy's {health.service} service.",
        {**openapi.OPS_PATHS, **(api.paths if api is not None else {})},
        api.schemas if api is not None else {},
    )
    app = web.Application(
        client_max_size=MAX_POST_BYTES, middlewares=[json_errors, api_keys(guard, frozenset(openapi.OPS_PATHS))]
    )
    app.add_routes(ops_routes(health, doc))
    if api is not None:
        app.add_routes(api.routes)
    return app


def serve_http(
    host: str, port: int, health: Health, api: HttpApi | None = None, keys: ApiKeys | None = None
) -> HttpServer:
    """Serve :func:`service_app` from a daemon thread; returns the server once its port is bound.

    Raises
    ------
    RuntimeError
        If the server could not start (the port is taken, say).
    """
    server = HttpServer(service_app(health, api, keys), host, port, name="http")
    server.start()
    return server


class HttpServer:
    """An aiohttp application served by a daemon thread with its own event loop, beside a blocking loop.

    >>> async def hello(_request: web.Request) -> web.Response:
    ...     return web.Response(text="hi")
    >>> app = web.Application()
    >>> _ = app.router.add_get("/", hello)
    >>> server = HttpServer(app, "127.0.0.1", 0)
    >>> server.start().startswith("http://127.0.0.1:"), server.port > 0
    (True, True)
    >>> server.stop()
    """

    def __init__(self, app: web.Application, host: str, port: int, name: str = "http") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; return the URL once the port is bound (:attr:`port` is then the bound one).

        Raises
        ------
        RuntimeError
            If the server could not start (the port is taken, say) within ``timeout_s``.
        """
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"HTTP server did not start on {self.host}:{self.port}: {self._error}")
        return self.url

    def stop(self, timeout_s: float = 40.0) -> None:
        """Stop accepting requests, let those in flight finish, and wait for the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:
            log.exception("HTTP server failed", extra={"server": self._thread.name})
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            host, port = runner.addresses[0][:2]
            self.port = port
            self.url = f"http://{host}:{port}"
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
