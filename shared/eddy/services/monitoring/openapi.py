"""The OpenAPI description of the monitoring dashboard (``dashboard.py``; ``dashboard/API.md`` for people)."""

from __future__ import annotations

from typing import Any

from eddy.runtime.openapi import answer, errors, query


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


NUMBERS = {"type": "array", "items": {"type": "number", "nullable": True}, "description": "one value per series.t"}
SERIES_BY_NAME = {"type": "object", "additionalProperties": NUMBERS}
EPOCH_MS = {"type": "integer", "description": "epoch milliseconds"}

VERSION_ESTIMATES: dict[str, Any] = {
    "type": "object",
    "required": ["calibration", "calibration_labels", "reference_accuracy", "threshold", "current", "windows"],
    "properties": {
        "calibration": {"type": "string", "description": "isotonic, binning or none"},
        "calibration_labels": {"type": "integer", "description": "labels in the calibration set"},
        "min_labels": {"type": "integer", "description": "labels the calibrator needs before any estimate"},
        "window": {"type": "integer", "description": "predictions per estimate window"},
        "calibration_window": {"type": "integer", "description": "most recent labels the calibrator is fitted on"},
        "reference_accuracy": {
            "type": "number",
            "nullable": True,
            "description": "realized accuracy of the first full calibration set; null until then",
        },
        "threshold": {"type": "number", "description": "the alert fires below reference_accuracy - threshold"},
        "current": {
            "type": "object",
            "nullable": True,
            "additionalProperties": _ref("Estimate"),
            "description": "per metric (accuracy, f1, roc_auc), of the latest window; null before the first",
        },
        "segments": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": _ref("Estimate")},
            "description": "per segment, per metric, over its latest predictions",
        },
        "windows": {"type": "array", "items": _ref("EstimatedWindow"), "description": "oldest first"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Streams": {"type": "object", "properties": {"streams": {"type": "array", "items": {"type": "string"}}}},
    "Dashboard": {
        "type": "object",
        "description": "A stream's dashboard document; only stream, task and warming_up before its first tick.",
        "required": ["stream", "task"],
        "properties": {
            "stream": {"type": "string"},
            "task": {"type": "string", "enum": ["binary", "multiclass", "regression"]},
            "warming_up": {"type": "boolean", "description": "true until the first tick"},
            "generated_at_ms": EPOCH_MS,
            "tick_s": {"type": "number", "description": "spacing of the points"},
            "series": {
                "type": "object",
                "properties": {
                    "t": {"type": "array", "items": EPOCH_MS},
                    "throughput": {**SERIES_BY_NAME, "description": "records per second during each tick"},
                    "latency_ms": {**SERIES_BY_NAME, "description": "ingestion to prediction: p50, p99"},
                    "quality": {
                        "type": "object",
                        "description": "per model@version, per metric name: window metrics over labeled events",
                        "additionalProperties": SERIES_BY_NAME,
                    },
                    "data_drift": {**SERIES_BY_NAME, "description": "PSI of the latest complete window, per feature"},
                    "prediction_drift": {**SERIES_BY_NAME, "description": "PSI of the score distribution, per model"},
                    "estimated_accuracy": {
                        **SERIES_BY_NAME,
                        "description": "per model@version: the label-free accuracy estimate of its latest window",
                    },
                },
                "additionalProperties": True,
            },
            "markers": {"type": "array", "items": _ref("Marker")},
            "models": {"type": "array", "items": _ref("ModelQuality"), "description": "champion first"},
            "drift": {"type": "array", "items": _ref("FeatureDrift")},
            "alerts": {"type": "array", "items": _ref("Alert"), "description": "open (firing) alerts"},
            "dlq": {
                "type": "object",
                "properties": {
                    "total": {"type": "integer"},
                    "by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
            "history": {
                "type": "array",
                "items": _ref("Period"),
                "description": "the production history: what answered when, oldest first",
            },
            "freshness": {
                "type": "object",
                "nullable": True,
                "description": "the champion's label freshness (label time → learned → served); null before any label",
                "required": [
                    "model",
                    "version",
                    "label_to_learned_s",
                    "label_to_served_s",
                    "lag_s",
                    "max_lag_s",
                    "status",
                ],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "integer"},
                    "label_to_learned_s": _ref("Quantiles"),
                    "label_to_served_s": _ref("Quantiles"),
                    "lag_s": {
                        "type": "number",
                        "description": "age of the newest served label while labels wait (learned and not served, or "
                        "produced past what the served snapshot read of S.feedback); 0 when none waits",
                    },
                    "max_lag_s": {"type": "number", "nullable": True, "description": "the contract's max_lag"},
                    "status": {
                        "type": "string",
                        "enum": ["ok", "lagging", "unwatched"],
                        "description": "lagging: lag_s past max_lag_s (the learning_lag alert fires); "
                        "unwatched: no max_lag",
                    },
                    "newest_learned_label_ms": {**EPOCH_MS, "nullable": True},
                    "served_label_ms": {**EPOCH_MS, "nullable": True},
                },
            },
        },
        "additionalProperties": True,
    },
    "Quantiles": {
        "type": "object",
        "required": ["p50", "p99", "n"],
        "properties": {
            "p50": {"type": "number", "nullable": True},
            "p99": {"type": "number", "nullable": True},
            "n": {"type": "integer", "description": "samples the quantiles are over"},
        },
    },
    "Marker": {
        "type": "object",
        "properties": {
            "t": EPOCH_MS,
            "kind": {"type": "string", "description": "alert, resolved, promotion, ..."},
            "label": {"type": "string"},
        },
    },
    "ModelQuality": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "role": {"type": "string"},
            "labeled": {"type": "integer"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number", "nullable": True}},
            "segments": {"type": "object", "additionalProperties": {"type": "object"}},
            # Inline, not a $ref: OpenAPI 3.0 ignores "nullable" beside a $ref (and its validators beside allOf).
            "estimated": {
                **VERSION_ESTIMATES,
                "nullable": True,
                "description": "the label-free estimate; null when the contract does not turn estimation on",
            },
        },
        "additionalProperties": True,
    },
    "Estimate": {
        "type": "object",
        "description": "an estimated metric with its 95% band, over n predictions",
        "required": ["value", "low", "high", "n"],
        "properties": {
            "value": {"type": "number"},
            "low": {"type": "number", "nullable": True},
            "high": {"type": "number", "nullable": True},
            "n": {"type": "integer"},
        },
    },
    "EstimatedWindow": {
        "type": "object",
        "required": ["index", "closed_at_ms", "n", "estimated", "realized", "labeled", "settled"],
        "properties": {
            "index": {"type": "integer"},
            "closed_at_ms": EPOCH_MS,
            "n": {"type": "integer", "description": "predictions in the window"},
            "estimated": {"type": "object", "additionalProperties": _ref("Estimate")},
            "realized": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "per metric, over the window's labels so far",
            },
            "labeled": {"type": "integer", "description": "of its predictions, those labeled so far"},
            "settled": {"type": "boolean", "description": "enough labels came: estimate - realized is final"},
        },
    },
    "Period": {
        "type": "object",
        "required": ["stream", "from_ms", "until_ms", "champion", "challenger", "canary", "cause", "by", "evidence"],
        "properties": {
            "stream": {"type": "string"},
            "from_ms": EPOCH_MS,
            "until_ms": {**EPOCH_MS, "nullable": True, "description": "epoch milliseconds; null: still"},
            "champion": {"type": "string", "description": "model@version"},
            "challenger": {"type": "string", "nullable": True, "description": "model@version on trial"},
            "canary": {"type": "number", "description": "the challenger's share of the traffic, 0..1"},
            "cause": {"type": "string", "description": "the registry event: registered, promoted, rolled_back, ..."},
            "by": {"type": "string", "description": "who asked: an API key's name or a service"},
            "evidence": {"type": "object", "additionalProperties": True},
        },
    },
    "FeatureDrift": {
        "type": "object",
        "properties": {
            "feature": {"type": "string"},
            "psi": {"type": "number", "nullable": True},
            "threshold": {"type": "number"},
            "window": {"type": "integer"},
            "detector_drifts": {"type": "integer"},
            "status": {"type": "string", "enum": ["ok", "drifting", "no_reference"]},
        },
        "additionalProperties": True,
    },
    "Alert": {"type": "object", "additionalProperties": True, "properties": {"alert_id": {"type": "string"}}},
}

AUTH_ERRORS = errors(401, 403)


def _asset(summary: str, content_type: str, op: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": op,
            "responses": {
                "200": {"description": summary, "content": {content_type: {"schema": {"type": "string"}}}},
                **AUTH_ERRORS,
            },
        }
    }


PATHS: dict[str, Any] = {
    "/dashboard": _asset("The dashboard page", "text/html", "dashboardPage"),
    "/dashboard/": _asset("The dashboard page", "text/html", "dashboardPageSlash"),
    "/dashboard/app.js": _asset("The page's script", "application/javascript", "dashboardScript"),
    "/dashboard/style.css": _asset("The page's style sheet", "text/css", "dashboardStyle"),
    "/api/streams": {
        "get": {
            "summary": "The streams monitored",
            "operationId": "listStreams",
            "responses": {"200": answer("the streams, sorted", _ref("Streams")), **AUTH_ERRORS},
        }
    },
    "/api/dashboard": {
        "get": {
            "summary": "A stream's dashboard document",
            "operationId": "dashboard",
            "parameters": [query("stream", "the stream (default: the first, sorted)")],
            "responses": {
                "200": answer("the document (series, markers, models, drift, alerts, DLQ)", _ref("Dashboard")),
                **errors(401, 403, 404, e404="unknown stream"),
            },
        }
    },
}
