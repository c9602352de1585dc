"""The pieces of every eddy OpenAPI document: the document itself, errors, API keys, and the open routes.

Each HTTP API of eddy describes itself at ``/openapi.json`` (OpenAPI 3.0.3): ingestion, inference's
predictions, the model registry, the monitoring dashboard; every service's ``/healthz``, ``/metrics`` and
``/openapi.json`` too (:data:`OPS_PATHS`). :func:`undocumented` lists the routes an application serves
that its document does not describe, so a test keeps the two together.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from eddy.contracts.stream import StreamContract

VERSION = "3.0.3"
# The keys of a path item that are operations (the others: parameters, summary, ...).
OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
ERROR = {"$ref": "#/components/schemas/Error"}
# The ways a client presents its key (eddy.runtime.auth); any one will do, or none when keys are off.
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic", "description": "any user name, the key as the password"},
}
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}, {"basic": []}, {}]
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for a person"},
        "status": {"type": "integer", "description": "the HTTP status again"},
    },
}
STANDARD_ERRORS = {
    400: "the request is not what the API takes (the message says why)",
    401: "no API key, or one that is not valid, while keys are configured (WWW-Authenticate says how to send one)",
    403: "the API key's role may not do this",
    404: "no such thing (the message says what)",
    409: "the request conflicts with what is recorded",
    413: "the request body is too large",
    429: "too many requests in flight; retry after Retry-After seconds",
    500: "internal error; see the service's log",
    503: "the service is not ready yet, or Kafka did not acknowledge",
}
HEALTH_SCHEMA = {
    "type": "object",
    "required": ["service", "status", "uptime_s"],
    "properties": {
        "service": {"type": "string"},
        "status": {"type": "string", "description": "starting, ok (doing its work), failing, stopping"},
        "uptime_s": {"type": "number"},
    },
    "additionalProperties": True,
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``content`` of a JSON request body or response."""
    return {"application/json": {"schema": schema}}


def answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response object: a JSON one of ``schema``, or one with no body documented."""
    return {"description": description, **({"content": json_content(schema)} if schema is not None else {})}


def errors(*codes: int, **descriptions: str) -> dict[str, Any]:
    """JSON error responses (``{"error", "status"}``) for ``codes``; ``descriptions`` overrides (``e404=...``).

    >>> sorted(errors(400, 404, e404="unknown stream"))
    ['400', '404']
    >>> errors(404, e404="unknown stream")["404"]["description"]
    'unknown stream'
    """
    return {str(code): answer(descriptions.get(f"e{code}", STANDARD_ERRORS[code]), ERROR) for code in codes}


def query(name: str, description: str, required: bool = False, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


OPS_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness, or readiness with ?ready=1",
            "description": "Liveness: 200 unless the service is failing. Readiness (ready=1): 200 only once it "
            "does its work. Both with the same document. Needs no API key.",
            "operationId": "healthz",
            "security": [],
            "parameters": [
                query("ready", "ask readiness (1, true or empty) rather than liveness (absent, 0, false)"),
            ],
            "responses": {
                "200": answer("alive (or ready)", HEALTH_SCHEMA),
                "503": answer("failing (or not ready yet)", HEALTH_SCHEMA),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "operationId": "metrics",
            "security": [],
            "responses": {
                "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": answer("the OpenAPI document of this server", {"type": "object"})},
        }
    },
}


def document(
    title: str, description: str, paths: dict[str, Any], schemas: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An OpenAPI 3.0.3 document of ``paths``, with the Error schema and the API-key schemes.

    >>> doc = document("eddy demo", "A demo.", OPS_PATHS)
    >>> doc["openapi"], sorted(doc["paths"]), sorted(doc["components"]["schemas"])
    ('3.0.3', ['/healthz', '/metrics', '/openapi.json'], ['Error'])
    """
    return {
        "openapi": VERSION,
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA, **(schemas or {})}, "securitySchemes": SECURITY_SCHEMES},
        "security": SECURITY,
    }


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """The ``(path, method)`` pairs ``app`` answers, paths as OpenAPI templates; HEAD (implied by GET) left out."""
    served = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is not None and route.method not in ("HEAD", "*"):
            served.add((resource.canonical, route.method.lower()))
    return served


def undocumented(app: web.Application, doc: dict[str, Any]) -> list[str]:
    """``METHOD /path`` of each route ``app`` serves that ``doc`` does not describe, sorted.

    >>> async def ok(_request: web.Request) -> web.Response:
    ...     return web.Response()
    >>> app = web.Application()
    >>> _ = app.add_routes([web.get("/a", ok), web.post("/b/{id}", ok)])
    >>> undocumented(app, {"paths": {"/a": {"get": {}}, "/c": {"get": {}}}})
    ['POST /b/{id}']
    """
    paths = doc.get("paths", {})
    return sorted(
        f"{method.upper()} {path}" for path, method in served_operations(app) if method not in paths.get(path, {})
    )


def unserved(app: web.Application, doc: dict[str, Any]) -> list[str]:
    """``METHOD /path`` of each operation ``doc`` describes that ``app`` does not serve, sorted.

    >>> async def ok(_request: web.Request) -> web.Response:
    ...     return web.Response()
    >>> app = web.Application()
    >>> _ = app.add_routes([web.get("/a", ok)])
    >>> unserved(app, {"paths": {"/a": {"get": {}, "parameters": []}, "/c": {"get": {}}}})
    ['GET /c']
    """
    served = served_operations(app)
    return sorted(
        f"{method.upper()} {path}"
        for path, item in doc.get("paths", {}).items()
        for method in item
        if method in OPERATIONS and (path, method) not in served
    )


# -- stream records ---------------------------------------------------------------------------------

_AVRO_PRIMITIVES: dict[str, dict[str, Any]] = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer", "format": "int64"},
    "int": {"type": "integer", "format": "int32"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "bytes": {"type": "string"},
}


def avro_json_schema(avro: Any) -> dict[str, Any]:
    """The OpenAPI (3.0) schema of the JSON a client sends for a value of Avro type ``avro``.

    >>> avro_json_schema(["null", "double"])
    {'type': 'number', 'nullable': True}
    >>> avro_json_schema({"type": "enum", "name": "E", "symbols": ["a", "b"]})
    {'type': 'string', 'enum': ['a', 'b']}
    >>> avro_json_schema(["int", "string"])
    {'oneOf': [{'type': 'integer', 'format': 'int32'}, {'type': 'string'}]}
    """
    if isinstance(avro, list):
        options = [avro_json_schema(t) for t in avro if t != "null"]
        schema = options[0] if len(options) == 1 else ({"oneOf": options} if options else {})
        return {**schema, "nullable": True} if "null" in avro and options else schema
    if isinstance(avro, str):
        return dict(_AVRO_PRIMITIVES.get(avro, {}))  # a named type defined elsewhere: any JSON
    kind = avro.get("type")
    if kind == "enum":
        return {"type": "string", "enum": list(avro["symbols"])}
    if kind == "array":
        return {"type": "array", "items": avro_json_schema(avro["items"])}
    if kind == "map":
        return {"type": "object", "additionalProperties": avro_json_schema(avro["values"])}
    if kind == "record":
        return {"type": "object", "properties": {f["name"]: avro_json_schema(f["type"]) for f in avro["fields"]}}
    if kind == "fixed":
        return {"type": "string"}
    return avro_json_schema(kind)  # a primitive with attributes (a logical type, say)


def event_schema(contract: StreamContract) -> dict[str, Any]:
    """The JSON object a client sends as one event of ``contract``'s stream (converted by ``to_event``).

    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> schema = event_schema(load_contract(REPO_ROOT / "schemas/streams/demo.yaml"))
    >>> schema["properties"]["x0"], "oneOf" in schema["properties"]["event_time_ms"]
    ({'type': 'number', 'nullable': True}, True)
    """
    properties: dict[str, Any] = {}
    for field in contract.event_schema["fields"]:
        prop = avro_json_schema(field["type"])
        if field.get("doc"):
            prop["description"] = field["doc"]
        properties[field["name"]] = prop
    properties[contract.time_field] = {
        "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
        "description": "Event time: epoch milliseconds or ISO-8601 with a timezone; default: time of receipt.",
    }
    properties[contract.id_field] = {
        **properties.get(contract.id_field, {"type": "string"}),
        "description": "Unique event id; a UUID is assigned when missing.",
    }
    return {"type": "object", "additionalProperties": False, "properties": properties}


def checked_event_schema(contract: StreamContract) -> dict[str, Any]:
    """:func:`event_schema` with the contract's rules (``check_record``): an event no rule rejects.

    What inference's prediction API predicts rather than rejects (ingestion takes any event of the
    schema's shape: validation applies the rules downstream).

    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> schema = checked_event_schema(load_contract(REPO_ROOT / "schemas/streams/demo.yaml"))
    >>> schema["required"], schema["properties"]["x0"]["minimum"], schema["properties"]["region"]["enum"][-1]
    (['x0', 'x1', 'x2'], 0.0, None)
    """
    schema = event_schema(contract)
    properties = schema["properties"]
    required = []
    for spec in contract.features:
        prop = dict(properties.get(spec.name, {}))
        if spec.min is not None:
            prop["minimum"] = spec.min
        if spec.max is not None:
            prop["maximum"] = spec.max
        if spec.pattern is not None:
            prop["pattern"] = spec.pattern
        if spec.required:
            prop.pop("nullable", None)
            required.append(spec.name)
        if spec.allowed is not None:
            # OpenAPI 3.0: a nullable enum lists null among its values.
            prop["enum"] = [*spec.allowed, *([None] if prop.get("nullable") else [])]
        properties[spec.name] = prop
    # Not blank (check_record's rule "required"), and after 1970 (its rule "positive").
    properties[contract.id_field] = {**properties[contract.id_field], "minLength": 1, "pattern": r"\S"}
    properties[contract.time_field] = {
        **properties[contract.time_field],
        "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "format": "date-time"}],
    }
    return {**schema, **({"required": required} if required else {})}


def records_body(record: dict[str, Any], description: str) -> dict[str, Any]:
    """A request body of records (``parse_body``): one JSON object, a JSON array of them, or JSON lines."""
    return {
        "required": True,
        "description": f"{description}: one JSON object, a JSON array of them, or JSON lines (one object a line)",
        "content": {
            "application/json": {"schema": {"oneOf": [record, {"type": "array", "items": record}]}},
            "application/x-ndjson": {"schema": record},
        },
    }


STREAM_PARAMETER = {
    "name": "stream",
    "in": "path",
    "required": True,
    "description": "the stream, as its contract names it",
    "schema": {"type": "string"},
}
