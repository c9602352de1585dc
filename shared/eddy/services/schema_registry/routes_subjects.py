"""Routes under ``/subjects``: register, look up, list, read and delete versions."""

from __future__ import annotations

from aiohttp import web

from . import errors
from .app_keys import SERVICE
from .http_io import json_response, paginate, query_flag, raw_json_response, read_json, subject_param
from .store import parse_candidate
from .versions import parse_version

routes = web.RouteTableDef()


@routes.get("/subjects")
async def list_subjects(request: web.Request) -> web.Response:
    """``GET /subjects`` (``deleted``, ``deletedOnly``, ``subjectPrefix``, ``offset``, ``limit``)."""
    store = request.app[SERVICE].store
    names = store.subjects(
        include_deleted=query_flag(request, "deleted"),
        deleted_only=query_flag(request, "deletedOnly", "deleted_only"),
        prefix=request.query.get("subjectPrefix", ""),
    )
    return json_response(paginate(names, request))


@routes.get("/subjects/{subject}/versions")
async def list_versions(request: web.Request) -> web.Response:
    """``GET /subjects/{subject}/versions``; 40401 if the subject has no versions."""
    store = request.app[SERVICE].store
    versions = store.versions(
        subject_param(request),
        include_deleted=query_flag(request, "deleted"),
        deleted_only=query_flag(request, "deletedOnly", "deleted_only"),
    )
    return json_response(paginate(versions, request))


@routes.post("/subjects/{subject}/versions")
async def register(request: web.Request) -> web.Response:
    """``POST /subjects/{subject}/versions``: register (idempotent for a live equal schema)."""
    subject = subject_param(request)
    body = await read_json(request)
    candidate = parse_candidate(body)
    if isinstance(body, dict):
        schema_id, version = body.get("id"), body.get("version")
        if (isinstance(schema_id, int) and schema_id >= 0) or (isinstance(version, int) and version > 0):
            raise errors.operation_not_permitted(
                f"Subject {subject} is not in import mode: an explicit id or version cannot be registered"
            )
    service = request.app[SERVICE]
    result = await service.write(lambda store: store.plan_register(subject, candidate))
    return json_response({"id": result.schema_id, "version": result.version})


@routes.post("/subjects/{subject}")
async def lookup(request: web.Request) -> web.Response:
    """``POST /subjects/{subject}``: find the version holding a schema (40401/40403)."""
    subject = subject_param(request)
    candidate = parse_candidate(await read_json(request))
    view = request.app[SERVICE].store.lookup(subject, candidate, include_deleted=query_flag(request, "deleted"))
    return json_response(view.to_json())


@routes.get("/subjects/{subject}/versions/{version}")
async def get_version(request: web.Request) -> web.Response:
    """``GET /subjects/{subject}/versions/{version|latest|-1}``."""
    version = parse_version(request.match_info["version"])
    view = request.app[SERVICE].store.get_version(
        subject_param(request), version, include_deleted=query_flag(request, "deleted")
    )
    return json_response(view.to_json())


@routes.get("/subjects/{subject}/versions/{version}/schema")
async def get_version_schema(request: web.Request) -> web.Response:
    """``GET /subjects/{subject}/versions/{version}/schema``: the raw schema text."""
    version = parse_version(request.match_info["version"])
    view = request.app[SERVICE].store.get_version(
        subject_param(request), version, include_deleted=query_flag(request, "deleted")
    )
    return raw_json_response(view.schema.encode())


@routes.get("/subjects/{subject}/versions/{version}/referencedby")
async def referenced_by(request: web.Request) -> web.Response:
    """``GET .../referencedby``: always ``[]`` since references are not supported."""
    version = parse_version(request.match_info["version"])
    request.app[SERVICE].store.get_version(subject_param(request), version, include_deleted=True)
    return json_response([])


@routes.delete("/subjects/{subject}")
async def delete_subject(request: web.Request) -> web.Response:
    """``DELETE /subjects/{subject}[?permanent=true]``: returns the deleted versions."""
    subject = subject_param(request)
    permanent = query_flag(request, "permanent")
    deleted = await request.app[SERVICE].write(lambda store: store.plan_delete_subject(subject, permanent))
    return json_response(deleted)


@routes.delete("/subjects/{subject}/versions/{version}")
async def delete_version(request: web.Request) -> web.Response:
    """``DELETE /subjects/{subject}/versions/{version}[?permanent=true]``: returns the version."""
    subject = subject_param(request)
    version = parse_version(request.match_info["version"])
    permanent = query_flag(request, "permanent")
    deleted = await request.app[SERVICE].write(lambda store: store.plan_delete_version(subject, version, permanent))
    return json_response(deleted)
