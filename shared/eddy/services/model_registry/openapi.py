"""The OpenAPI description of the model registry's REST API (``http.py``), served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from eddy.runtime.openapi import answer, errors, json_content, query

DESCRIPTION = (
    "Versions, aliases, lineage, experiments and the audit log of every stream's models. With API keys "
    "configured, reads need the viewer role and every POST the operator role; the key's identity is then "
    "the actor of a change, whatever the body says."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
VERSION = {"type": "string", "description": "a model version: NAME@NUMBER, like default@3", "example": "default@3"}
STREAM = query("stream", "the stream, as its contract names it", required=True)
LIMIT = query("limit", "how many, newest first", schema={"type": "integer", "minimum": 1})

SCHEMAS: dict[str, Any] = {
    "VersionSummary": {
        "type": "object",
        "properties": {
            "version": VERSION,
            "name": {"type": "string"},
            "number": {"type": "integer"},
            "alias": {"type": "string", "nullable": True, "description": "champion, challenger, shadow, ..."},
            "parent": {"type": "string", "nullable": True},
            "created_by": {"type": "string"},
            "created_at_ms": {"type": "integer"},
            "learned_count": {"type": "integer"},
            "online_learned_count": {
                "type": "integer",
                "nullable": True,
                "description": "learned online since its snapshot; null until inference reports it",
            },
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "reason": {"type": "string", "nullable": True},
            "sha256": {"type": "string"},
            "size": {"type": "integer"},
        },
    },
    "Versions": {
        "type": "object",
        "properties": {
            "stream": {"type": "string"},
            "champion": VERSION,
            "challenger": {**VERSION, "nullable": True},
            "canary": {"type": "number", "description": "the share of traffic the challenger serves"},
            "versions": {"type": "array", "items": _ref("VersionSummary")},
        },
    },
    "Version": {
        "type": "object",
        "description": "every column of the version, with its alias, its ancestors (nearest first) and its audit",
        "properties": {
            "key": VERSION,
            "alias": {"type": "string", "nullable": True},
            "lineage": {"type": "array", "items": OBJECT},
            "audit": {"type": "array", "items": _ref("AuditEntry")},
        },
        "additionalProperties": True,
    },
    "Diff": {
        "type": "object",
        "properties": {
            "stream": {"type": "string"},
            "a": VERSION,
            "b": VERSION,
            "spec": {
                "type": "object",
                "properties": {
                    "same": {"type": "boolean"},
                    "changes": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"path": {"type": "string"}, "a": {}, "b": {}}},
                    },
                },
            },
            "metrics": {"type": "object", "additionalProperties": {"type": "object"}},
            "lineage": OBJECT,
        },
    },
    "AuditEntry": {"type": "object", "additionalProperties": True, "properties": {"event_type": {"type": "string"}}},
    "Audit": {
        "type": "object",
        "properties": {"stream": {"type": "string"}, "events": {"type": "array", "items": _ref("AuditEntry")}},
    },
    "Applied": {
        "type": "object",
        "description": "the change's model event and the stream's roles after it",
        "properties": {
            "event": OBJECT,
            "published": {"type": "boolean", "description": "whether Kafka acknowledged the event already"},
            "roles": {"type": "object", "additionalProperties": {"type": "string"}},
            "canary": {"type": "number"},
        },
    },
    "Change": {
        "type": "object",
        "required": ["stream"],
        "properties": {
            "stream": {"type": "string"},
            "version": VERSION,
            "to": {**VERSION, "description": "rollback: the version to go back to (default: the previous champion)"},
            "reason": {"type": "string"},
            "actor": {"type": "string", "description": "who asks, when no API keys are configured"},
        },
    },
    "AuditRecord": {
        "type": "object",
        "required": ["stream", "action"],
        "properties": {
            "stream": {"type": "string"},
            "action": {"type": "string", "description": "one of the DLQ replay's audit actions"},
            "details": OBJECT,
            "actor": {"type": "string"},
        },
    },
    "Experiment": OBJECT,
    "Experiments": {
        "type": "object",
        "properties": {"stream": {"type": "string"}, "experiments": {"type": "array", "items": OBJECT}},
    },
    "NewExperiment": {
        "type": "object",
        "required": ["stream", "models", "data", "metrics"],
        "properties": {
            "id": {"type": "string", "description": "1 to 128 of letters, digits, . _ : - (default: a UUID)"},
            "stream": {"type": "string"},
            "title": {"type": "string"},
            "created_by": {"type": "string"},
            "created_at_ms": {"type": "integer", "minimum": 0},
            "models": {"type": "array", "minItems": 1, "items": {"oneOf": [VERSION, OBJECT]}},
            "data": OBJECT,
            "metrics": OBJECT,
            "report": {"type": "string", "nullable": True},
            "output": {"type": "string", "nullable": True},
        },
        "additionalProperties": True,
    },
    "Recorded": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "created": {"type": "boolean"}, "experiment": OBJECT},
    },
}

READ_ERRORS = errors(400, 401, 403, 404, 500, 503, e404="unknown stream or version")
CHANGE_ERRORS = errors(
    400, 401, 403, 404, 409, 413, 500, 503, e404="unknown stream or version", e409="the change conflicts"
)


def _read(summary: str, op: str, schema: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": op,
            "parameters": [STREAM, *parameters],
            "responses": {"200": answer(summary, _ref(schema)), **READ_ERRORS},
        }
    }


def _change(summary: str, op: str, body: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": op,
        "requestBody": {"required": True, "content": json_content(_ref(body))},
        "responses": {
            "200": answer("done, and its event acknowledged by Kafka", _ref("Applied")),
            "202": answer("decided; its event is sent to Kafka as soon as it can be", _ref("Applied")),
            **CHANGE_ERRORS,
        },
    }


PATHS: dict[str, Any] = {
    "/api/models": _read("A stream's versions and aliases", "listVersions", "Versions"),
    "/api/models/show": _read(
        "One version, its lineage and audit", "showVersion", "Version", query("version", "the version", True)
    ),
    "/api/models/diff": _read(
        "Two versions compared: spec, metrics, lineage",
        "diffVersions",
        "Diff",
        query("a", "one version", True),
        query("b", "the other", True),
    ),
    "/api/audit": {
        **_read("A stream's audit log, newest first", "listAudit", "Audit", LIMIT),
        "post": _change("Record an operator action done elsewhere (eddy dlq replay)", "recordAudit", "AuditRecord"),
    },
    "/api/models/promote": {"post": _change("Make a version the champion", "promote", "Change")},
    "/api/models/rollback": {"post": _change("Go back to the previous (or a named) champion", "rollback", "Change")},
    "/api/models/archive": {"post": _change("Archive a version", "archive", "Change")},
    "/api/retrain": {"post": _change("Ask retraining for a challenger", "retrain", "Change")},
    "/api/experiments": {
        **_read("A stream's experiments (backtest runs), newest first", "listExperiments", "Experiments", LIMIT),
        "post": {
            "summary": "Record an experiment",
            "operationId": "addExperiment",
            "requestBody": {"required": True, "content": json_content(_ref("NewExperiment"))},
            "responses": {
                "201": answer("recorded", _ref("Recorded")),
                "200": answer("the same experiment was recorded already", _ref("Recorded")),
                **errors(400, 401, 403, 404, 409, 413, 500, 503, e409="another experiment has this id"),
            },
        },
    },
    "/api/experiments/show": {
        "get": {
            "summary": "One experiment",
            "operationId": "showExperiment",
            "parameters": [query("id", "the experiment's id", True)],
            "responses": {
                "200": answer("the experiment", _ref("Experiment")),
                **errors(400, 401, 403, 404, 500, 503, e404="no such experiment"),
            },
        }
    },
}
