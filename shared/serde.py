"""Avro serde in the Confluent wire format, through confluent-kafka's own classes.

Each topic's value schema is registered (or found) once at startup; serializers
are then pinned to that schema id so a producer can never send bytes whose
schema the registry does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from shared.contracts import StreamContract
from shared.schemas import subject_for, value_schema


class SerdeError(ValueError):
    """Bytes that are not a valid record of the topic's schema, or a record that cannot be encoded."""


def registry_client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": url})


class TopicSerde:
    """Encode and decode one topic's values.

    Decoding uses the writer's schema id from the message and resolves it to the
    schema this code was written against (the reader schema), so producers may
    evolve compatibly without breaking consumers.
    """

    def __init__(self, client: SchemaRegistryClient, topic: str, schema_str: str) -> None:
        self.topic = topic
        self.schema_id = client.register_schema(subject_for(topic), Schema(schema_str, "AVRO"))
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        self._serializer = AvroSerializer(
            client, schema_str, conf={"auto.register.schemas": False, "use.schema.id": self.schema_id}
        )
        self._deserializer = AvroDeserializer(client, schema_str)

    def encode(self, value: dict[str, Any]) -> bytes:
        try:
            data = self._serializer(value, self._ctx)
        except Exception as exc:  # the serializer raises a variety of types for bad records
            raise SerdeError(f"cannot encode record for {self.topic}: {exc}") from exc
        assert data is not None
        return data

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data:
            raise SerdeError("empty value")
        if data[0] != 0 or len(data) < 5:
            raise SerdeError("not Confluent wire format (magic byte 0 and a 4-byte schema id expected)")
        try:
            value = self._deserializer(data, self._ctx)
        except Exception as exc:
            raise SerdeError(f"cannot decode {self.topic} value: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, dict):
            raise SerdeError(f"decoded value of {self.topic} is not a record")
        return value


class SerdeRegistry:
    """One ``TopicSerde`` per topic, created lazily and registered at first use."""

    def __init__(self, client: SchemaRegistryClient, schemas_dir: Path, contracts: dict[str, StreamContract]):
        self.client = client
        self._schemas_dir = schemas_dir
        self._contracts = contracts
        self._serdes: dict[str, TopicSerde] = {}

    def for_topic(self, topic: str) -> TopicSerde:
        serde = self._serdes.get(topic)
        if serde is None:
            schema = value_schema(topic, self._schemas_dir, self._contracts)
            if schema is None:
                raise KeyError(f"topic {topic!r} carries raw bytes, not Avro")
            serde = self._serdes[topic] = TopicSerde(self.client, topic, schema)
        return serde

    def register(self, topics: Iterable[str]) -> None:
        """Register the schemas of ``topics`` now, so start-up fails fast if the registry refuses them."""
        for topic in topics:
            if value_schema(topic, self._schemas_dir, self._contracts) is not None:
                self.for_topic(topic)


def encode_key(key: str | None) -> bytes | None:
    """Keys are plain UTF-8 strings, as Confluent's StringSerializer writes them."""
    return None if key is None else key.encode("utf-8")


def decode_key(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")
