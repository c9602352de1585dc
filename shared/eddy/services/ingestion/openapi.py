"""The OpenAPI description of the ingestion API, with each stream's event shape from its contract."""

from __future__ import annotations

from typing import Any

from eddy.contracts.stream import StreamContract

_AVRO_TO_JSON = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "int": "integer",
    "string": "string",
    "boolean": "boolean",
}


def _event_schema(contract: StreamContract) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in contract.event_schema["fields"]:
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        json_types = [_AVRO_TO_JSON.get(t, "string") for t in types if isinstance(t, str) and t != "null"]
        prop: dict[str, Any] = {"type": json_types[0] if len(json_types) == 1 else json_types}
        if "null" in types:
            prop["nullable"] = True
        if field.get("doc"):
            prop["description"] = field["doc"]
        properties[field["name"]] = prop
    properties[contract.time_field] = {
        "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
        "description": "Event time: epoch milliseconds or ISO-8601 with a timezone; default: time of receipt.",
    }
    properties[contract.id_field]["description"] = "Unique event id; a UUID is assigned when missing."
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _results() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "status": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
                        "event_id": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
            },
        },
    }


def _operation(summary: str, body_schema: dict[str, Any]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "summary": summary,
        "parameters": [{"name": "stream", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": body_schema}},
                "application/x-ndjson": {"schema": body_schema, "description": "one JSON object per line"},
            },
        },
        "responses": {
            "200": {
                "description": "every record acknowledged by Kafka (or a duplicate within the window)",
                "content": {"application/json": {"schema": _results()}},
            },
            "207": {
                "description": "some records rejected (reasons per record); the others acknowledged",
                "content": {"application/json": {"schema": _results()}},
            },
            "400": {"description": "body is not JSON, a JSON array or JSON lines", **error},
            "401": {"description": "no or unknown API key", **error},
            "403": {"description": "the key's role may not send records", **error},
            "404": {"description": "unknown stream", **error},
            "413": {"description": "too many records or too large a body", **error},
            "422": {
                "description": "every record rejected (reasons per record)",
                "content": {"application/json": {"schema": _results()}},
            },
            "429": {"description": "producer queue full; retry after Retry-After seconds", **error},
            "503": {"description": "Kafka did not acknowledge the records", **error},
        },
    }


def openapi(contracts: dict[str, StreamContract]) -> dict[str, Any]:
    """The OpenAPI 3.0 document served at ``/openapi.json``."""
    events = {"oneOf": [_event_schema(c) for c in contracts.values()]} if contracts else {"type": "object"}
    label = {
        "type": "object",
        "required": ["event_id"],
        "properties": {
            "event_id": {"type": "string"},
            "label": {"description": "the label (the stream contract may name this field differently)"},
            "label_time_ms": {"type": "integer"},
            "source": {"type": "string"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "eddy ingestion", "version": "1", "description": "Send events and labels to eddy streams."},
        "paths": {
            "/v1/streams/{stream}/events": {"post": _operation("Send events to S.events", events)},
            "/v1/streams/{stream}/feedback": {"post": _operation("Send labels to S.feedback", label)},
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                **{f"{name}Event": _event_schema(c) for name, c in contracts.items()},
            },
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"apiKey": []}, {}],
    }
