"""What eddy's aiohttp APIs share: JSON errors, with a message, for every failure; API keys (eddy.runtime.auth);
``/healthz``, ``/metrics`` and ``/openapi.json``.

``/healthz`` answers two questions (:func:`eddy.runtime.observability.health_code`): plain, whether the
process is alive; as ``/healthz?ready=1``, whether it does its work. Both answer with the same JSON doc.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, LooseHeaders, Middleware
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eddy.contracts.records import BodyError, parse_body
from eddy.contracts.stream import StreamContract
from eddy.runtime.auth import ApiKeys, Denied, needed_role
from eddy.runtime.observability import Health, asks_readiness, health_code

log = logging.getLogger(__name__)

# Where the api_keys middleware leaves the identity of a request's key (absent when keys are off).
IDENTITY_KEY = web.RequestKey("identity", str)


def error(status: int, message: str, headers: LooseHeaders | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON with a message, including aiohttp's own (404, 413) and crashes (500)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
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


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own error (no route, a method the route does not take, too large a body) as JSON, saying why."""
    if exc.status == 404 and request.match_info.http_exception is exc:
        return error(404, f"not found: no route {request.path}")
    if exc.status == 405:
        # 405 says which methods the path takes; no other header of aiohttp's errors is meant for the client.
        allowed = exc.headers.get("Allow", "")
        return error(405, f"{request.method} is not allowed on {request.path}; allowed: {allowed}", {"Allow": allowed})
    return error(exc.status, "request body too large" if exc.status == 413 else exc.reason)


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


def api_keys(keys: ApiKeys, open_paths: frozenset[str]) -> Middleware:
    """Middleware: every route but ``open_paths`` needs a key of the role its method needs (``needed_role``).

    A refused request is answered 401 or 403 (:func:`refused`); an allowed one with a configured key
    carries the key's identity for the handler (:func:`identity`), which no header or parameter of the
    client can set. A path no route matches is answered 404 (or 405) without a key, as before.
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is None and request.path not in open_paths:
            verdict = keys.check(request.headers, needed_role(request.method), f"{request.method} {request.path}")
            if isinstance(verdict, Denied):
                return error(verdict.status, verdict.message, headers=verdict.headers)
            if verdict.authenticated:
                request[IDENTITY_KEY] = verdict.name
        return await handler(request)

    return guard


def identity(request: web.Request) -> str | None:
    """The identity of the API key ``request`` presented (:func:`api_keys`); None when keys are off."""
    return request.get(IDENTITY_KEY)


def ops_routes(health: Health, openapi: dict[str, Any]) -> list[web.RouteDef]:
    """``GET /healthz`` (liveness, or readiness with ``?ready=1``), ``/metrics`` and ``/openapi.json``."""

    async def healthz(request: web.Request) -> web.Response:
        doc = health.snapshot()
        code = health_code(doc["status"], asks_readiness(request.query_string))
        return web.Response(body=json.dumps(doc).encode(), status=code, content_type="application/json")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    document = json.dumps(openapi)

    async def describe(_request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    return [web.get("/healthz", healthz), web.get("/metrics", metrics), web.get("/openapi.json", describe)]


def query_params(request: web.Request) -> dict[str, str]:
    """The first value of each of ``request``'s query parameters."""
    return {name: request.query.getone(name) for name in request.query}
