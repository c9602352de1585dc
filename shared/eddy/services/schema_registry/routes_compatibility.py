"""Routes under ``/compatibility``: test a schema without registering it."""

from __future__ import annotations

from aiohttp import web

from . import errors
from .app_keys import SERVICE
from .http_io import json_response, query_flag, read_json, subject_param
from .store import CompatibilityResult, parse_candidate
from .versions import parse_version

routes = web.RouteTableDef()


async def _test(request: web.Request, version: int | None) -> web.Response:
    subject = subject_param(request)
    verbose = query_flag(request, "verbose")
    body = await read_json(request)
    store = request.app[SERVICE].store
    try:
        candidate = parse_candidate(body)
    except errors.RegistryError as exc:
        # Like Confluent: with verbose=true an invalid schema is reported as incompatible.
        if not verbose or exc.error_code != 42201:
            raise
        result = CompatibilityResult(False, [exc.message])
    else:
        result = store.test_compatibility(subject, candidate, version)
    payload: dict[str, object] = {"is_compatible": result.is_compatible}
    if verbose:
        payload["messages"] = result.messages
    return json_response(payload)


@routes.post("/compatibility/subjects/{subject}/versions/{version}")
async def test_against_version(request: web.Request) -> web.Response:
    """``POST /compatibility/subjects/{subject}/versions/{version|latest}``.

    ``latest`` on a subject without versions is compatible; an explicit version
    that does not exist is 40401/40402.
    """
    version = parse_version(request.match_info["version"])
    return await _test(request, version)


@routes.post("/compatibility/subjects/{subject}/versions")
async def test_against_subject(request: web.Request) -> web.Response:
    """``POST /compatibility/subjects/{subject}/versions``: the check registration would do."""
    return await _test(request, None)
