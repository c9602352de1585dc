"""What eddy's aiohttp APIs share: JSON errors, with a message, for every failure."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from shared.auth import ApiKeys

log = logging.getLogger(__name__)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is JSON with a message, including aiohttp's own (404, 413) and crashes (500)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason if exc.status != 413 else "request body too large")
    except Exception:
        log.exception("request failed")
        return error(500, "internal error; see the service log")


def refused(keys: ApiKeys, request: web.Request, needed: str, action: str) -> web.Response | None:
    """The 401 or 403 answer when ``request``'s API key may not ``action`` (``needed`` role); None when it may."""
    if not keys.enabled:
        return None
    role = keys.role_of(request.headers)
    if role is None:
        return error(401, "an API key is required (X-API-Key header or Authorization: Bearer)")
    if not ApiKeys.allows(role, needed):
        return error(403, f"the {role} role may not {action}")
    return None
