"""What eddy's aiohttp APIs share: JSON errors, with a message, for every failure."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from shared.auth import ApiKeys
from shared.contracts import StreamContract
from shared.ingest import BodyError, parse_body

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


async def stream_batch(
    request: web.Request, contracts: dict[str, StreamContract], keys: ApiKeys, action: str, max_batch: int
) -> tuple[StreamContract, list[Any]] | web.Response:
    """The contract and records of a ``POST /v1/streams/{stream}/...`` request, or the error to answer.

    In order: 401/403 (the key may not ``action``), 404 (unknown stream), 400 (a body that is not
    JSON records), 413 (more than ``max_batch`` records).
    """
    denied = refused(keys, request, "producer", action)
    if denied is not None:
        return denied
    stream = request.match_info["stream"]
    contract = contracts.get(stream)
    if contract is None:
        return error(404, f"unknown stream {stream!r}; known: {', '.join(sorted(contracts))}")
    try:
        records = parse_body(await request.read())
    except BodyError as exc:
        return error(400, str(exc))
    if len(records) > max_batch:
        return error(413, f"{len(records)} records in one request; the limit is {max_batch}")
    return contract, records
