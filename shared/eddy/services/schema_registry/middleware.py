"""The aiohttp middleware: Confluent-style JSON errors plus request metrics.

Both concerns live in one middleware because every layer costs a coroutine
frame on the lookup-by-id hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import errors
from .http_io import error_response
from .metrics import RegistryMetrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    if isinstance(exc, errors.RegistryError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        # Jersey's shape for its own errors (unknown path, 405, 413): error_code = status.
        return error_response(errors.RegistryError(exc.status, exc.status, f"HTTP {exc.status} {exc.reason}"))
    log.error("internal error handling %s %s", request.method, request.path, exc_info=exc)
    return error_response(errors.store_error("Internal Server Error"))


def registry_middleware(metrics: RegistryMetrics) -> Middleware:
    """Build the middleware that maps errors to JSON and records every request.

    Parameters
    ----------
    metrics : RegistryMetrics
        Where to count requests and observe latency.

    Returns
    -------
    Middleware
        Never lets an exception escape: registry errors keep their code,
        aiohttp HTTP errors become ``{"error_code": <status>}``, anything else
        is logged and answered with 500/50001.
    """
    # Resolving label children costs a lock and a dict lookup per call; cache them.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_response(request, exc)
        except Exception as exc:
            response = _error_response(request, exc)
        resource = request.match_info.route.resource
        # Route templates, not raw paths, keep label cardinality bounded.
        route = resource.canonical if resource is not None else "unmatched"
        key = (request.method, route, response.status)
        pair = children.get(key)
        if pair is None:
            pair = (
                metrics.requests.labels(request.method, route, str(response.status)),
                metrics.latency.labels(request.method, route),
            )
            children[key] = pair
        pair[0].inc()
        pair[1].observe(time.perf_counter() - start)
        return response

    return middleware
