"""The OpenAPI description of the ingestion API, with each stream's event shape from its contract."""

from __future__ import annotations

from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.runtime.openapi import OPS_PATHS, STREAM_PARAMETER, answer, document, errors, event_schema, records_body

RESULTS: dict[str, Any] = {
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


def label_schema(contract: StreamContract) -> dict[str, Any]:
    """The JSON object a client sends as one label of ``contract``'s stream (converted by ``to_feedback``).

    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> schema = label_schema(load_contract(REPO_ROOT / "schemas/streams/demo.yaml"))
    >>> schema["required"], schema["additionalProperties"]
    (['event_id', 'label'], False)
    """
    return {
        "type": "object",
        "required": ["event_id", contract.label_field],
        "additionalProperties": False,
        "properties": {
            "event_id": {"type": "string", "minLength": 1, "description": "the event this label belongs to"},
            contract.label_field: {
                "anyOf": [{"type": "boolean"}, {"type": "number"}, {"type": "string"}],
                "description": "boolean for binary tasks, string (or integer) for multiclass, number for regression",
            },
            "label_time_ms": {
                "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
                "description": "when the label became known: epoch milliseconds or ISO-8601 with a timezone; "
                "default: time of receipt",
            },
            "source": {"type": "string", "nullable": True, "description": "who or what supplied the label"},
        },
    }


def _operation(summary: str, op: str, record: dict[str, Any]) -> dict[str, Any]:
    results = {"$ref": "#/components/schemas/Results"}
    return {
        "summary": summary,
        "operationId": op,
        "parameters": [STREAM_PARAMETER],
        "requestBody": records_body(record, "the records"),
        "responses": {
            "200": answer("every record acknowledged by Kafka (or a duplicate within the window)", results),
            "207": answer("some records rejected (reasons per record); the others acknowledged", results),
            "422": answer("every record rejected (reasons per record)", results),
            **errors(
                400,
                401,
                403,
                404,
                413,
                429,
                500,
                503,
                e400="body is not JSON, a JSON array or JSON lines",
                e403="the key's role may not send records",
                e404="unknown stream",
                e413="too many records or too large a body",
                e429="producer queue full; retry after Retry-After seconds",
                e503="Kafka did not acknowledge the records",
            ),
        },
    }


def openapi(contracts: dict[str, StreamContract]) -> dict[str, Any]:
    """The OpenAPI 3.0 document served at ``/openapi.json``.

    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> doc = openapi({"demo": load_contract(REPO_ROOT / "schemas/streams/demo.yaml")})
    >>> sorted(doc["paths"])[-2:], "demoEvent" in doc["components"]["schemas"]
    (['/v1/streams/{stream}/events', '/v1/streams/{stream}/feedback'], True)
    """
    schemas = {f"{name}Event": event_schema(c) for name, c in contracts.items()}
    labels = {f"{name}Label": label_schema(c) for name, c in contracts.items()}
    paths = {
        **OPS_PATHS,
        "/v1/streams/{stream}/events": {"post": _operation("Send events to S.events", "sendEvents", _any_of(schemas))},
        "/v1/streams/{stream}/feedback": {
            "post": _operation("Send labels to S.feedback", "sendLabels", _any_of(labels))
        },
    }
    return document(
        "eddy ingestion", "Send events and labels to eddy streams.", paths, {"Results": RESULTS, **schemas, **labels}
    )


def _any_of(schemas: dict[str, Any]) -> dict[str, Any]:
    """One of the component ``schemas`` (any object when there is none)."""
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    return {"anyOf": refs} if refs else {"type": "object"}
