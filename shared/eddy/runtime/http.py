"""What eddy's aiohttp APIs share: JSON errors, with a message, for every failure, and API keys (eddy.runtime.auth)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import LooseHeaders
from aiohttp.web_protocol import RequestPayloadError

from eddy.contracts.records import BodyError, parse_body
from eddy.contracts.stream import StreamContract
from eddy.runtime.auth import ApiKeys, Denied

log = logging.getLogger(__name__)


def error(status: int, message: str, headers: LooseHeaders | None = None) -> web.Response:
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
    except RequestPayloadError as exc:
        # The client's body does not decode as its Content-Encoding says (bad gzip or deflate): its fault.
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        response = error(400, f"the request body cannot be read: {getattr(cause, 'message', '') or cause}")
        # aiohttp drops the connection after a body it could not read: say so, or the client's next request on it
        # would meet a reset.
        response.force_close()
        return response
    except Exception:
        log.exception("request failed")
        return error(500, "internal error; see the service log")


def refused(keys: ApiKeys, request: web.Request, needed: str, action: str) -> web.Response | None:
    """The 401 or 403 answer when ``request``'s API key may not ``action`` (``needed`` role); None when it may.

    A 401 carries the ``WWW-Authenticate`` challenges; neither answer repeats the key presented.
    """
    verdict = keys.check(request.headers, needed, action)
    if isinstance(verdict, Denied):
        return error(verdict.status, verdict.message, headers=verdict.headers)
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
