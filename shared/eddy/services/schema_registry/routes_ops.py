"""Operational routes: root, health, Prometheus metrics and contexts."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .app_keys import METRICS, SERVICE, STARTED_AT
from .http_io import json_response

routes = web.RouteTableDef()


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    """``GET /``: ``{}`` like Confluent."""
    return json_response({})


@routes.get("/contexts")
async def contexts(request: web.Request) -> web.Response:
    """``GET /contexts``: only the default context exists."""
    return json_response(["."])


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness plus a few counts."""
    store = request.app[SERVICE].store
    return web.json_response(
        {
            "status": "ok",
            "schemas": store.schema_count,
            "subjects": len(store.subjects()),
            "uptime_seconds": round(time.monotonic() - request.app[STARTED_AT], 3),
        }
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition."""
    registry_metrics = request.app[METRICS]
    store = request.app[SERVICE].store
    registry_metrics.schemas.set(store.schema_count)
    registry_metrics.subjects.set(len(store.subjects()))
    body = generate_latest(registry_metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
