"""Routes under ``/schemas``: lookups by global id (the serializers' hot path)."""

from __future__ import annotations

from aiohttp import web

from . import errors
from .app_keys import SERVICE
from .http_io import json_response, paginate, query_flag, raw_json_response, schema_id_param

routes = web.RouteTableDef()


@routes.get("/schemas")
async def list_schemas(request: web.Request) -> web.Response:
    """``GET /schemas`` (``subjectPrefix``, ``deleted``, ``latestOnly``, ``offset``, ``limit``)."""
    views = request.app[SERVICE].store.list_schemas(
        prefix=request.query.get("subjectPrefix", ""),
        include_deleted=query_flag(request, "deleted"),
        latest_only=query_flag(request, "latestOnly"),
    )
    return json_response(paginate([v.to_json() for v in views], request))


@routes.get("/schemas/types")
async def schema_types(request: web.Request) -> web.Response:
    """``GET /schemas/types``: only AVRO is accepted by this registry."""
    return json_response(["AVRO"])


@routes.get("/schemas/ids/{id}")
async def get_by_id(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}``: ``{"schema": ...}`` from a pre-encoded body.

    ``?subject=`` is accepted; ids are global, so it does not change the answer.
    """
    schema_id = schema_id_param(request)
    body = request.app[SERVICE].store.schema_body_by_id(schema_id)
    if body is None:
        raise errors.schema_not_found(schema_id)
    return raw_json_response(body)


@routes.get("/schemas/ids/{id}/schema")
async def get_raw_by_id(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/schema``: the raw schema text."""
    text = request.app[SERVICE].store.schema_by_id(schema_id_param(request))
    return raw_json_response(text.encode())


@routes.get("/schemas/ids/{id}/versions")
async def versions_of_id(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/versions``: ``[{"subject": ..., "version": ...}]``."""
    pairs = request.app[SERVICE].store.subject_versions_for_id(
        schema_id_param(request),
        include_deleted=query_flag(request, "deleted"),
        subject=request.query.get("subject"),
    )
    return json_response(paginate([{"subject": s, "version": v} for s, v in pairs], request))


@routes.get("/schemas/ids/{id}/subjects")
async def subjects_of_id(request: web.Request) -> web.Response:
    """``GET /schemas/ids/{id}/subjects``: distinct subject names using the id."""
    pairs = request.app[SERVICE].store.subject_versions_for_id(
        schema_id_param(request),
        include_deleted=query_flag(request, "deleted"),
        subject=request.query.get("subject"),
    )
    names = sorted({s for s, _ in pairs})
    return json_response(paginate(names, request))
