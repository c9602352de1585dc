"""Confluent's own, unmodified Python client and Avro serdes against the real process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from .conftest import RegistryProcess

pytestmark = pytest.mark.timeout(60)

ORDER_V1 = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "eddy.test",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        ],
    }
)
ORDER_V2 = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "eddy.test",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)
BREAKING = json.dumps(
    {"type": "record", "name": "Order", "namespace": "eddy.test", "fields": [{"name": "sku", "type": "string"}]}
)


@pytest.fixture
def client(shared_registry: RegistryProcess) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": shared_registry.url, "max.retries": 0}) as sr:
        yield sr


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_register_and_lookups(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("cc-orders-value", Schema(ORDER_V1, "AVRO"))
    assert client.register_schema("cc-orders-value", Schema(ORDER_V1, "AVRO")) == schema_id
    fetched = client.get_schema(schema_id)
    assert fetched.schema_type == "AVRO"
    assert json.loads(fetched.schema_str or "")["name"] == "eddy.test.Order"
    client.clear_caches()
    looked_up = client.lookup_schema("cc-orders-value", Schema(ORDER_V1, "AVRO"))
    assert (looked_up.schema_id, looked_up.version, looked_up.subject) == (schema_id, 1, "cc-orders-value")
    latest = client.get_latest_version("cc-orders-value")
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert client.get_version("cc-orders-value", 1).schema_id == schema_id
    assert client.get_versions("cc-orders-value") == [1]
    assert "cc-orders-value" in client.get_subjects()
    assert client.get_schema_types() == ["AVRO"]
    versions = client.get_schema_versions(schema_id)
    assert [(v.subject, v.version) for v in versions] == [("cc-orders-value", 1)]
    assert client.get_subjects_by_schema_id(schema_id) == ["cc-orders-value"]
    assert client.get_referenced_by("cc-orders-value", 1) == []


def test_lookup_unknown_raises_confluent_error_codes(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as exc:
        client.get_latest_version("cc-missing")
    assert (exc.value.http_status_code, exc.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as exc:
        client.get_schema(987654)
    assert (exc.value.http_status_code, exc.value.error_code) == (404, 40403)


def test_compatibility_and_config(client: SchemaRegistryClient) -> None:
    client.register_schema("cc-compat-value", Schema(ORDER_V1, "AVRO"))
    assert client.test_compatibility("cc-compat-value", Schema(ORDER_V2, "AVRO")) is True
    assert client.test_compatibility("cc-compat-value", Schema(BREAKING, "AVRO")) is False
    assert client.test_compatibility_all_versions("cc-compat-value", Schema(ORDER_V2, "AVRO")) is True
    with pytest.raises(SchemaRegistryError) as exc:
        client.register_schema("cc-compat-value", Schema(BREAKING, "AVRO"))
    assert exc.value.http_status_code == 409
    with pytest.raises(SchemaRegistryError) as exc:
        client.get_compatibility("cc-compat-value")
    assert exc.value.error_code == 40408
    assert client.set_compatibility("cc-compat-value", "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility("cc-compat-value") == "NONE"
    assert client.register_schema("cc-compat-value", Schema(BREAKING, "AVRO")) > 0
    assert client.get_compatibility() == "BACKWARD"
    # The client annotates set_compatibility as str, but it returns the JSON body.
    assert client.set_compatibility(level="FULL") == {"compatibility": "FULL"}
    assert str(client.get_config().compatibility_level) == "FULL"
    assert client.set_compatibility(level="BACKWARD") == {"compatibility": "BACKWARD"}
    assert str(client.delete_config("cc-compat-value").compatibility_level) == "NONE"
    with pytest.raises(SchemaRegistryError) as exc:
        client.set_compatibility("cc-compat-value", "sideways")
    assert exc.value.error_code == 42203


def test_delete_subject_and_version(client: SchemaRegistryClient) -> None:
    client.register_schema("cc-del-value", Schema(ORDER_V1, "AVRO"))
    client.register_schema("cc-del-value", Schema(ORDER_V2, "AVRO"))
    assert client.delete_version("cc-del-value", 2) == 2
    assert client.get_versions("cc-del-value") == [1]
    assert client.get_versions("cc-del-value", deleted=True) == [1, 2]
    assert client.delete_subject("cc-del-value") == [1]
    assert "cc-del-value" not in client.get_subjects()
    assert "cc-del-value" in client.get_subjects(deleted=True)
    assert client.delete_subject("cc-del-value", permanent=True) == [1, 2]
    assert "cc-del-value" not in client.get_subjects(deleted=True)


def test_serializer_auto_registers_and_round_trips(client: SchemaRegistryClient) -> None:
    serializer = AvroSerializer(client, ORDER_V1)
    deserializer = AvroDeserializer(client)
    order = {"id": 7, "amount": 12.5, "status": "PAID"}
    payload = serializer(order, ctx("cc-auto"))
    assert payload is not None and payload[0] == 0
    latest = client.get_latest_version("cc-auto-value")
    assert int.from_bytes(payload[1:5], "big") == latest.schema_id
    # A fresh client has no cache: the deserializer must fetch the writer schema by id.
    with SchemaRegistryClient({"url": client.config()["url"]}) as fresh:
        assert AvroDeserializer(fresh)(payload, ctx("cc-auto")) == order
    assert deserializer(payload, ctx("cc-auto")) == order


def test_use_latest_version_without_auto_register(client: SchemaRegistryClient) -> None:
    client.register_schema("cc-latest-value", Schema(ORDER_V1, "AVRO"))
    v2_id = client.register_schema("cc-latest-value", Schema(ORDER_V2, "AVRO"))
    serializer = AvroSerializer(client, ORDER_V2, conf={"auto.register.schemas": False, "use.latest.version": True})
    payload = serializer({"id": 1, "amount": 2.0, "status": "NEW", "note": "hi"}, ctx("cc-latest"))
    assert payload is not None and int.from_bytes(payload[1:5], "big") == v2_id
    reader = AvroDeserializer(client, conf={"use.latest.version": True})
    assert reader(payload, ctx("cc-latest")) == {"id": 1, "amount": 2.0, "status": "NEW", "note": "hi"}


def test_serializer_without_auto_register_requires_registration(client: SchemaRegistryClient) -> None:
    serializer = AvroSerializer(client, ORDER_V1, conf={"auto.register.schemas": False})
    with pytest.raises(SchemaRegistryError) as exc:
        serializer({"id": 1, "amount": 1.0, "status": "NEW"}, ctx("cc-unregistered"))
    assert exc.value.error_code == 40401
    client.register_schema("cc-unregistered-value", Schema(ORDER_V1, "AVRO"))
    payload = serializer({"id": 1, "amount": 1.0, "status": "NEW"}, ctx("cc-unregistered"))
    assert payload is not None


def test_old_data_reads_with_new_reader_schema(client: SchemaRegistryClient) -> None:
    v1_payload = AvroSerializer(client, ORDER_V1)({"id": 3, "amount": 1.5, "status": "NEW"}, ctx("cc-evolve"))
    AvroSerializer(client, ORDER_V2)({"id": 4, "amount": 2.5, "status": "PAID", "note": None}, ctx("cc-evolve"))
    reader = AvroDeserializer(client, ORDER_V2)
    assert reader(v1_payload, ctx("cc-evolve")) == {"id": 3, "amount": 1.5, "status": "NEW", "note": None}
