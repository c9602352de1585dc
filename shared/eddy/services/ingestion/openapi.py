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
LABEL: dict[str, Any] = {
    "type": "object",
    "required": ["event_id"],
    "properties": {
        "event_id": {"type": "string"},
        "label": {"description": "the label (the stream contract may name this field differently)"},
        "label_time_ms": {"type": "integer"},
        "source": {"type": "string"},
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
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    events = {"anyOf": refs} if refs else {"type": "object"}
    paths = {
        **OPS_PATHS,
        "/v1/streams/{stream}/events": {"post": _operation("Send events to S.events", "sendEvents", events)},
        "/v1/streams/{stream}/feedback": {"post": _operation("Send labels to S.feedback", "sendLabels", LABEL)},
    }
    return document("eddy ingestion", "Send events and labels to eddy streams.", paths, {"Results": RESULTS, **schemas})
