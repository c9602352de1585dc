"""Routes under ``/config`` (compatibility levels) and ``/mode`` (always READWRITE)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from . import errors
from .app_keys import SERVICE
from .compatibility import Level
from .http_io import json_response, query_flag, read_json, subject_param

routes = web.RouteTableDef()

_MODES: Final = frozenset({"READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"})


def _requested_level(body: Any) -> Level:
    if not isinstance(body, dict):
        raise errors.bad_request("Request body must be a JSON object")
    # The Python client's ServerConfig may send either spelling.
    raw = body.get("compatibility", body.get("compatibilityLevel"))
    level = Level.parse(raw)
    if level is None:
        raise errors.invalid_compatibility_level(raw)
    return level


@routes.get("/config")
async def get_global_config(request: web.Request) -> web.Response:
    """``GET /config``: ``{"compatibilityLevel": ...}``."""
    return json_response({"compatibilityLevel": request.app[SERVICE].store.level(None).value})


@routes.put("/config")
async def put_global_config(request: web.Request) -> web.Response:
    """``PUT /config`` with ``{"compatibility": LEVEL}``; 42203 for an unknown level."""
    level = _requested_level(await read_json(request))
    stored = await request.app[SERVICE].write(lambda store: store.plan_set_level(None, level))
    return json_response({"compatibility": stored.value})


@routes.delete("/config")
async def delete_global_config(request: web.Request) -> web.Response:
    """``DELETE /config``: reset the global level to the default; returns the old one."""
    old = await request.app[SERVICE].write(lambda store: store.plan_delete_level(None))
    return json_response({"compatibilityLevel": old.value})


@routes.get("/config/{subject}")
async def get_subject_config(request: web.Request) -> web.Response:
    """``GET /config/{subject}[?defaultToGlobal=true]``; 40408 when unset and not defaulting."""
    level = request.app[SERVICE].store.level(
        subject_param(request), default_to_global=query_flag(request, "defaultToGlobal")
    )
    return json_response({"compatibilityLevel": level.value})


@routes.put("/config/{subject}")
async def put_subject_config(request: web.Request) -> web.Response:
    """``PUT /config/{subject}`` with ``{"compatibility": LEVEL}``."""
    subject = subject_param(request)
    level = _requested_level(await read_json(request))
    stored = await request.app[SERVICE].write(lambda store: store.plan_set_level(subject, level))
    return json_response({"compatibility": stored.value})


@routes.delete("/config/{subject}")
async def delete_subject_config(request: web.Request) -> web.Response:
    """``DELETE /config/{subject}``: returns the removed level; 40401 if none was set."""
    subject = subject_param(request)
    old = await request.app[SERVICE].write(lambda store: store.plan_delete_level(subject))
    return json_response({"compatibilityLevel": old.value})


@routes.get("/mode")
async def get_mode(request: web.Request) -> web.Response:
    """``GET /mode``: this registry is always READWRITE."""
    return json_response({"mode": "READWRITE"})


@routes.get("/mode/{subject}")
async def get_subject_mode(request: web.Request) -> web.Response:
    """``GET /mode/{subject}``: 40409 unless ``defaultToGlobal=true`` (no subject modes exist)."""
    subject = subject_param(request)
    if not query_flag(request, "defaultToGlobal"):
        raise errors.subject_mode_not_configured(subject)
    return json_response({"mode": "READWRITE"})


async def _put_mode(request: web.Request) -> web.Response:
    body = await read_json(request)
    mode = body.get("mode") if isinstance(body, dict) else None
    if not isinstance(mode, str) or mode.upper() not in _MODES:
        raise errors.invalid_mode(mode)
    if mode.upper() != "READWRITE":
        raise errors.operation_not_permitted(f"Mode {mode.upper()} is not supported; only READWRITE is")
    return json_response({"mode": "READWRITE"})


routes.put("/mode")(_put_mode)
routes.put("/mode/{subject}")(_put_mode)
