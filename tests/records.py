"""Building InRecords and model events by hand, for handler tests without Kafka."""

from __future__ import annotations

from typing import Any

from eddy.contracts.stream import StreamContract, load_contract
from eddy.core.settings import REPO_ROOT
from eddy.ml.roles import StreamRoles, VersionKey, model_event
from eddy.runtime.loop import InRecord


def demo_contract() -> StreamContract:
    return load_contract(REPO_ROOT / "schemas/streams/demo.yaml")


def record(topic: str, value: dict[str, Any], offset: int = 0, partition: int = 0, raw: bytes = b"raw") -> InRecord:
    return InRecord(topic, partition, offset, value.get("event_id"), value, 1000, [], raw)


def event(i: int, **overrides: Any) -> dict[str, Any]:
    base = {
        "event_id": f"e{i}",
        "event_time_ms": 1_700_000_000_000 + i,
        "x0": 1.0,
        "x1": 2.0,
        "x2": 3.0,
        "region": "north",
    }
    return {**base, **overrides}


def prediction(i: int, served: bool = True, model: str = "default", **overrides: Any) -> dict[str, Any]:
    base = {
        "event_id": f"e{i}",
        "stream": "demo",
        "model_name": model,
        "model_version": 1,
        "model_learned": 0,
        "served": served,
        "prediction": True,
        "probabilities": {"true": 0.6, "false": 0.4},
        "features": {"x0": float(i % 10), "x1": 2.0, "x2": 3.0},
        "event_time_ms": 1_700_000_000_000 + i,
        "predicted_at_ms": 1_700_000_000_010 + i,
        "latency_ms": 1.0,
        "ingested_at_ms": None,
        "source_partition": 0,
        "source_offset": i,
        "segment": None,
        "shard": None,
    }
    return {**base, **overrides}


def labeled_example(i: int, **overrides: Any) -> dict[str, Any]:
    """An S.labeled record of default@1 for event ``e<i>``, right, every time ``i``; ``overrides`` replace fields."""
    base = {
        "event_id": f"e{i}",
        "stream": "demo",
        "model_name": "default",
        "model_version": 1,
        "model_learned": i,
        "prediction": True,
        "probabilities": None,
        "features": {},
        "label": True,
        "event_time_ms": i,
        "predicted_at_ms": i,
        "label_time_ms": i,
        "joined_at_ms": i,
    }
    return {**base, **overrides}


def label(i: int, value: Any = True) -> dict[str, Any]:
    return {"event_id": f"e{i}", "label": value, "label_time_ms": 1_700_000_001_000 + i, "source": "test"}


def registry_fact(
    stream: str,
    key: VersionKey,
    event_type: str,
    aliases: dict[VersionKey, str],
    canary: float = 0.0,
    details: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A model-registry fact as its followers read it: a model event carrying the stream's alias table."""
    table = StreamRoles(stream, aliases, canary).to_details()
    return model_event(stream, key, event_type, "model_registry", {**table, **(details or {})}, **options)
