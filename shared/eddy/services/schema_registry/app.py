"""aiohttp application factory: routes, middlewares and shared objects."""

from __future__ import annotations

import time

from aiohttp import web

from .app_keys import METRICS, SERVICE, STARTED_AT
from .config import DEFAULT_MAX_BODY_BYTES
from .http_io import MAX_BODY_KEY
from .metrics import RegistryMetrics
from .middleware import registry_middleware
from .routes_compatibility import routes as compatibility_routes
from .routes_config import routes as config_routes
from .routes_ops import routes as ops_routes
from .routes_schemas import routes as schema_routes
from .routes_subjects import routes as subject_routes
from .service import RegistryService


def create_app(
    service: RegistryService,
    metrics: RegistryMetrics | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> web.Application:
    """Build the registry's aiohttp application.

    Parameters
    ----------
    service : RegistryService
        Store and journal to serve.
    metrics : RegistryMetrics, optional
        Metrics sink (a fresh one by default).
    max_body_bytes : int
        Request bodies above this size are answered with 413.

    Returns
    -------
    web.Application
        Ready to be run by an ``AppRunner``.
    """
    metrics = metrics or RegistryMetrics()
    app = web.Application(
        middlewares=[registry_middleware(metrics)],
        # aiohttp enforces this while reading; the handlers check Content-Length first.
        client_max_size=max_body_bytes,
    )
    app[SERVICE] = service
    app[METRICS] = metrics
    app[STARTED_AT] = time.monotonic()
    app[MAX_BODY_KEY] = max_body_bytes
    for table in (ops_routes, schema_routes, subject_routes, config_routes, compatibility_routes):
        app.router.add_routes(table)
    return app
