"""The fast codec writes exactly what confluent-kafka's AvroSerializer writes, and reads what it reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings

from tests.records import prediction

SETTINGS = Settings()


def registry(codec: str, client: SchemaRegistryClient | None = None) -> SerdeRegistry:
    client = client or SchemaRegistryClient.new_client({"url": "mock://serde-test"})
    return SerdeRegistry(client, SETTINGS.schemas_dir, load_contracts(SETTINGS.contracts_dir), codec=codec)


def values() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("demo.events", {"event_id": "é-1", "event_time_ms": 1, "x0": 1.5, "x1": None, "x2": -0.0, "region": "north"}),
        ("demo.predictions", prediction(3)),
        ("demo.predictions", {**prediction(4), "prediction": None, "probabilities": None, "ingested_at_ms": 12}),
        ("demo.feedback", {"event_id": "e", "label": "cat", "label_time_ms": 2, "source": None}),
    ]


@pytest.mark.parametrize(("topic", "value"), values())
def test_fast_and_confluent_codecs_agree_byte_for_byte(topic: str, value: dict[str, Any]) -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://serde-agree"})
    fast, reference = registry("fast", client).for_topic(topic), registry("confluent", client).for_topic(topic)
    data = fast.encode(value)
    assert data == reference.encode(value)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == fast.schema_id
    assert fast.decode(data) == reference.decode(data) == value


def test_reads_an_older_compatible_writer_schema() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://serde-evolve"})
    fast = registry("fast", client).for_topic("demo.events")
    old = json.loads(json.dumps(load_contracts(SETTINGS.contracts_dir)["demo"].event_schema))
    old["fields"] = [f for f in old["fields"] if f["name"] != "region"]
    old_id = client.register_schema("other-value", Schema(json.dumps(old), "AVRO"))
    import io

    import fastavro

    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, fastavro.parse_schema(old), {"event_id": "a", "event_time_ms": 5, "x0": 1.0, "x1": 2.0, "x2": 3.0}
    )
    data = b"\x00" + old_id.to_bytes(4, "big") + body.getvalue()
    decoded = fast.decode(data)
    assert decoded["region"] is None and decoded["x2"] == 3.0


@pytest.mark.parametrize("codec", ["fast", "confluent"])
@pytest.mark.parametrize(
    "data", [b"", b"\x01\x00\x00\x00\x01abc", b"\x00\x00", b"not avro", b"\x00\x00\x00\x00\x01\xff\xff\xff\xff\xff"]
)
def test_garbage_is_a_serde_error(codec: str, data: bytes) -> None:
    serde = registry(codec).for_topic("demo.events")
    with pytest.raises(SerdeError):
        serde.decode(data)


def test_trailing_bytes_are_rejected() -> None:
    serde = registry("fast").for_topic("demo.feedback")
    data = serde.encode({"event_id": "e", "label": True, "label_time_ms": 2, "source": None})
    with pytest.raises(SerdeError, match="trailing bytes"):
        serde.decode(data + b"\x00junk")


def test_unencodable_record_is_a_serde_error() -> None:
    serde = registry("fast").for_topic("demo.feedback")
    with pytest.raises(SerdeError, match="cannot encode"):
        serde.encode({"event_id": "e", "label": [1], "label_time_ms": "soon"})


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="EDDY_SERDE"):
        registry("turbo")
