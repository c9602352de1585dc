"""The OpenAPI description of inference's prediction API (``http.py``), served at its ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.runtime.openapi import (
    OPS_PATHS,
    STREAM_PARAMETER,
    answer,
    checked_event_schema,
    document,
    errors,
    records_body,
)

REASON = {
    "type": "object",
    "properties": {
        "field": {"type": "string", "nullable": True},
        "rule": {"type": "string", "description": "the contract's rule broken, or schema"},
        "value": {"nullable": True},
        "message": {"type": "string"},
    },
}
RESULTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "predicted": {"type": "integer"},
        "rejected": {"type": "integer"},
        "results": {
            "type": "array",
            "description": "one per record, in request order",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "status": {"type": "string", "enum": ["predicted", "rejected"]},
                    "event_id": {"type": "string"},
                    "prediction": {"nullable": True, "description": "the class, or the number for regression"},
                    "probabilities": {
                        "type": "object",
                        "nullable": True,
                        "additionalProperties": {"type": "number"},
                    },
                    "model_name": {"type": "string"},
                    "model_version": {"type": "integer"},
                    "model_learned": {"type": "integer"},
                    "reasons": {"type": "array", "items": REASON},
                },
            },
        },
    },
}


def openapi(contracts: dict[str, StreamContract]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the prediction API, each stream's event shape from its contract.

    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> sorted(openapi({"demo": load_contract(REPO_ROOT / "schemas/streams/demo.yaml")})["paths"])
    ['/openapi.json', '/v1/streams/{stream}/predict']
    """
    schemas = {f"{name}Event": checked_event_schema(c) for name, c in contracts.items()}
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schemas]
    events = {"anyOf": refs} if refs else {"type": "object"}
    results = {"$ref": "#/components/schemas/Predictions"}
    predict = {
        "summary": "Predict records with the model the stream serves",
        "description": "Each record is converted and checked as an event, predicted, and logged to S.predictions; "
        "the answer comes once Kafka acknowledged the predictions.",
        "operationId": "predict",
        "parameters": [STREAM_PARAMETER],
        "requestBody": records_body(events, "the records to predict"),
        "responses": {
            "200": answer("every record predicted", results),
            "207": answer("some records rejected (reasons per record); the others predicted", results),
            "422": answer("every record rejected (reasons per record)", results),
            **errors(
                400,
                401,
                403,
                404,
                413,
                500,
                503,
                e403="the key's role may not request predictions",
                e404="unknown stream",
                e413="too many records or too large a body",
                e503="Kafka did not acknowledge the predictions",
            ),
        },
    }
    paths = {"/openapi.json": OPS_PATHS["/openapi.json"], "/v1/streams/{stream}/predict": {"post": predict}}
    return document(
        "eddy predictions",
        "Synchronous predictions, logged to S.predictions like those of the stream.",
        paths,
        {"Predictions": RESULTS, **schemas},
    )
