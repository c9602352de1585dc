"""Avro serde in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body.

Each topic's value schema is registered (or found) once at startup, and every
record is written with that id, so a producer can never send bytes whose schema
the registry does not hold. Decoding resolves the writer's schema (looked up by
id, once) to the schema this code was written against, so producers may evolve
compatibly without breaking consumers.

Two codecs write the same bytes:

- ``fast`` (the default): for flat schemas, eddy's native codec
  (``shared/eddy/avro/native.py``) for records of the current schema id, and fastavro's
  schemaless reader and writer for everything else, with the schemas cached
  per id. Several times faster than the next one (docs/benchmarks.md).
- ``confluent``: confluent-kafka's own ``AvroSerializer`` / ``AvroDeserializer``.
  It is the reference the fast codec is tested against, byte for byte; set
  ``EDDY_SERDE=confluent`` to use it.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from eddy.avro import native
from eddy.avro.schemas import subject_for, value_schema
from eddy.contracts.stream import StreamContract
from eddy.core.envconfig import read_one
from eddy.core.settings import Settings

_HEADER = struct.Struct(">bI")


class SerdeError(ValueError):
    """Bytes that are not a valid record of the topic's schema, or a record that cannot be encoded."""


def registry_config(settings: Settings) -> dict[str, str]:
    """The schema registry client's config: the URL, and basic auth and a CA file where they are set.

    Examples
    --------
    >>> registry_config(Settings(schema_registry_url="https://sr:8081", schema_registry_basic_auth="u:p"))
    {'url': 'https://sr:8081', 'basic.auth.user.info': 'u:p'}
    """
    conf = {"url": settings.schema_registry_url}
    if settings.schema_registry_basic_auth:
        conf["basic.auth.user.info"] = settings.schema_registry_basic_auth
    if settings.schema_registry_ca_location:
        conf["ssl.ca.location"] = settings.schema_registry_ca_location
    return conf


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """A client of the registry ``settings`` name, with its credentials (``registry_config``)."""
    return SchemaRegistryClient.new_client(registry_config(settings))


class TopicSerde:
    """Encode and decode one topic's values."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema_str: str, codec: str = "fast") -> None:
        self.topic = topic
        self.codec = codec
        self.client = client
        self.schema_id = client.register_schema(subject_for(topic), Schema(schema_str, "AVRO"))
        self._header = _HEADER.pack(0, self.schema_id)
        self._reader = fastavro.parse_schema(json.loads(schema_str), named_schemas={})
        self._writers: dict[int, Any] = {self.schema_id: self._reader}
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        self._serializer = AvroSerializer(
            client, schema_str, conf={"auto.register.schemas": False, "use.schema.id": self.schema_id}
        )
        self._deserializer = AvroDeserializer(client, schema_str)
        self.schema: dict[str, Any] = json.loads(schema_str)
        self._native_decoder, self._native_encoder = _native_codec(self._header, self.schema, codec)

    def is_current(self, data: bytes) -> bool:
        """Whether ``data`` is written with this topic's registered schema (so it can be sent unchanged)."""
        return data[:5] == self._header

    def encode(self, value: dict[str, Any]) -> bytes:
        try:
            if self.codec == "confluent":
                data = self._serializer(value, self._ctx)
                assert data is not None
                return data
            if self._native_encoder is not None:
                data = self._native_encoder.encode(value)
                if data is not None:
                    return data
            out = io.BytesIO()
            out.write(self._header)
            fastavro.schemaless_writer(out, self._reader, value)
            return out.getvalue()
        except Exception as exc:  # both writers raise a variety of types for records that do not fit
            raise SerdeError(f"cannot encode record for {self.topic}: {type(exc).__name__}: {exc}") from exc

    def columns_natively(
        self, values: Sequence[bytes | None], plan: Sequence[int]
    ) -> tuple[bytearray, list[Any]] | None:
        """The native codec's ``columns`` (see ``eddy/avro/columns.py``); None where it does not serve this schema."""
        columns = getattr(self._native_decoder, "columns", None)  # a Checker (enums, floats, ...) has none
        return None if columns is None else columns(values, plan)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if self._native_decoder is not None:
            decoded = self._native_decoder.decode((data,))[0]
            if decoded is not None:
                return decoded
        return self._decode_slowly(data)

    def decode_many(self, values: Sequence[bytes | None]) -> list[dict[str, Any] | SerdeError]:
        """``decode`` each value; a value that does not decode gives its ``SerdeError`` in its place."""
        decoded: list[Any] = (
            self._native_decoder.decode(values) if self._native_decoder is not None else [None] * len(values)
        )
        for i, value in enumerate(decoded):
            if value is None:
                try:
                    decoded[i] = self._decode_slowly(values[i])
                except SerdeError as exc:
                    decoded[i] = exc
        return decoded

    def _decode_slowly(self, data: bytes | None) -> dict[str, Any]:
        # Everything the native walker does not read entirely (other schema ids, bad bytes): fastavro decodes it,
        # or says what is wrong with it.
        if not data:
            raise SerdeError("empty value")
        if len(data) < 5 or data[0] != 0:
            raise SerdeError("not Confluent wire format (magic byte 0 and a 4-byte schema id expected)")
        try:
            if self.codec == "confluent":
                value = self._deserializer(data, self._ctx)
            else:
                schema_id = _HEADER.unpack_from(data)[1]
                writer = self._writers.get(schema_id) or self._writer(schema_id)
                body = io.BytesIO(data)
                body.seek(5)
                reader = None if writer is self._reader else self._reader
                value = fastavro.schemaless_reader(body, writer, reader)
                if body.tell() != len(data):
                    raise ValueError(f"{len(data) - body.tell()} trailing bytes after the record")
        except Exception as exc:
            raise SerdeError(f"cannot decode {self.topic} value: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, dict):
            raise SerdeError(f"decoded value of {self.topic} is not a record")
        return value

    def _writer(self, schema_id: int) -> Any:
        """The writer schema of ``schema_id``, fetched from the registry once."""
        schema = self.client.get_schema(schema_id)
        if schema.schema_type not in (None, "AVRO"):
            raise ValueError(f"schema id {schema_id} is {schema.schema_type}, not Avro")
        parsed = fastavro.parse_schema(json.loads(schema.schema_str or "null"), named_schemas={})
        self._writers[schema_id] = parsed
        return parsed


def _native_codec(header: bytes, schema: dict[str, Any], codec: str) -> tuple[Any, Any]:
    """The native decoder and encoder of ``schema``, each None where the native code does not handle it.

    The codec handles maps (predictions, labeled examples); the checker's walker handles enums, fixed,
    bytes and floats; together they cover every schema of eddy's own topics and most event schemas.
    """
    if codec != "fast" or not native.NATIVE:
        return None, None
    try:
        both = native.codec(header, schema)
        return both, both
    except native.Unsupported:
        pass
    try:
        return native.checker(header, native.decode_program(schema)), None
    except native.Unsupported:
        return None, None


class JsonSerde:
    """Values of ``S.raw``: one JSON object per record, as users' own producers write them."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def is_current(self, data: bytes) -> bool:
        return False

    def encode(self, value: dict[str, Any]) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def decode_many(self, values: Sequence[bytes | None]) -> list[dict[str, Any] | SerdeError]:
        out: list[dict[str, Any] | SerdeError] = []
        for data in values:
            try:
                out.append(self.decode(data))
            except SerdeError as exc:
                out.append(exc)
        return out

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data:
            raise SerdeError("empty value")
        try:
            value = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise SerdeError(f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise SerdeError(f"a raw record must be a JSON object, got {type(value).__name__}")
        return value


class SerdeRegistry:
    """One ``TopicSerde`` per topic, created lazily and registered at first use."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        schemas_dir: Path,
        contracts: dict[str, StreamContract],
        codec: str | None = None,
    ):
        self.client = client
        self.codec = codec or read_one(Settings, "serde")
        if self.codec not in ("fast", "confluent"):
            raise ValueError(f"EDDY_SERDE must be 'fast' or 'confluent', not {self.codec!r}")
        self._schemas_dir = schemas_dir
        self._contracts = contracts
        self._serdes: dict[str, TopicSerde | JsonSerde] = {}

    def for_topic(self, topic: str) -> TopicSerde | JsonSerde:
        serde = self._serdes.get(topic)
        if serde is None:
            if topic.endswith(".raw"):
                serde = self._serdes[topic] = JsonSerde(topic)
                return serde
            schema = value_schema(topic, self._schemas_dir, self._contracts)
            if schema is None:
                raise KeyError(f"topic {topic!r} carries raw bytes, not Avro")
            serde = self._serdes[topic] = TopicSerde(self.client, topic, schema, self.codec)
        return serde

    def schema_id(self, topic: str) -> int:
        """The id ``topic``'s value schema is registered under."""
        serde = self.for_topic(topic)
        if not isinstance(serde, TopicSerde):
            raise KeyError(f"topic {topic!r} carries JSON, not Avro")
        return serde.schema_id

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
