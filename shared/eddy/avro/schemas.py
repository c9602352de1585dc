"""The Avro value schema of every topic, read from ``schemas/``.

``schemas/`` is the single source of truth: services register these at startup
and never produce bytes whose schema the registry does not hold.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, PLATFORM_DLQ_TOPIC

PLATFORM_SCHEMAS = {
    "predictions": "prediction.avsc",
    "feedback": "feedback.avsc",
    "labeled": "labeled.avsc",
    "alerts": "alert.avsc",
    "models": "model_snapshot.avsc",
    "profiles": "profile.avsc",
}

# The DLQ keeps the original bytes untouched (they may not be Avro at all), with the
# reasons in headers, as Kafka Connect's dead-letter queues do.
RAW_TOPIC_KINDS = {"dlq", "raw"}


@cache
def _read(path: Path) -> str:
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"))


def load_schema(schemas_dir: Path, file_name: str) -> str:
    """The schema in ``file_name`` as compact JSON text."""
    return _read(schemas_dir / file_name)


def value_schema(topic: str, schemas_dir: Path, contracts: dict[str, StreamContract]) -> str | None:
    """The value schema of ``topic`` as JSON text, or None for raw-bytes topics (the DLQ).

    Raises
    ------
    KeyError
        For a topic that belongs to no known stream or kind.
    """
    if topic == MODEL_EVENTS_TOPIC:
        return load_schema(schemas_dir, "model_event.avsc")
    if topic == MODEL_CANDIDATES_TOPIC:
        return load_schema(schemas_dir, "model_candidate.avsc")
    if topic == PLATFORM_DLQ_TOPIC:
        return None
    stream, _, kind = topic.rpartition(".")
    if stream not in contracts:
        raise KeyError(f"topic {topic!r} belongs to no known stream (known: {', '.join(sorted(contracts))})")
    if kind in ("events", "validated"):
        return json.dumps(contracts[stream].event_schema, separators=(",", ":"))
    if kind in RAW_TOPIC_KINDS:
        return None
    if kind in PLATFORM_SCHEMAS:
        return load_schema(schemas_dir, PLATFORM_SCHEMAS[kind])
    raise KeyError(f"topic {topic!r}: unknown kind {kind!r}")


def subject_for(topic: str) -> str:
    """Confluent's default TopicNameStrategy for values."""
    return f"{topic}-value"


def schema_doc(schema_json: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(schema_json)
    return result
