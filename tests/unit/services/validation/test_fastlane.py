"""Validation's fast lane without Kafka: what it compiles, what it vouches for, when it stands aside."""

from __future__ import annotations

import dataclasses
import io
import struct
from typing import Any

import fastavro
import pytest
from eddy.contracts.stream import StreamContract
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.fastlane import NATIVE, FastValidation, Unsupported, compile_program
from eddy.services.validation.handlers import ValidateBatch

from tests.records import demo_contract, event

native = pytest.mark.skipif(not NATIVE, reason="the native extension was not built (no C compiler)")
SCHEMA_ID = 41


def wire(contract: StreamContract, value: dict[str, Any], schema_id: int = SCHEMA_ID) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(contract.event_schema, named_schemas={}), value)
    return out.getvalue()


def with_fields(contract: StreamContract, *fields: dict[str, Any]) -> StreamContract:
    schema = dict(contract.event_schema, fields=[*contract.event_schema["fields"], *fields])
    return dataclasses.replace(contract, event_schema=schema)


def lane(reference_size: int = 0) -> FastValidation:
    handler = ValidateBatch({"demo": demo_contract()}, ValidationConfig(reference_size=reference_size))
    return FastValidation(handler, {"demo.events": SCHEMA_ID})


@pytest.mark.parametrize(
    ("field_type", "reason"),
    [
        ({"type": "record", "name": "Inner", "fields": []}, "nested records"),
        ({"type": "array", "items": "double"}, "arrays"),
        (["null", "string", "double"], r"is not \[null, T\]"),
        ({"type": "long", "logicalType": "timestamp-millis"}, "logical type"),
        ("Undefined", "defined before"),
    ],
)
def test_schemas_it_cannot_walk_are_refused_with_the_reason(field_type: Any, reason: str) -> None:
    contract = with_fields(demo_contract(), {"name": "extra", "type": field_type})
    with pytest.raises(Unsupported, match=reason):
        compile_program(contract)


def test_enums_and_fixed_are_walked_and_may_be_referenced_by_name() -> None:
    contract = with_fields(
        demo_contract(),
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
        {"name": "other", "type": ["null", "Colour"], "default": None},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    )
    kinds = [op[1] for op in compile_program(contract)[-3:]]
    assert kinds == [8, 8, 9]


@native
def test_valid_events_are_vouched_for_with_key_and_event_time() -> None:
    contract = demo_contract()
    topic, verdicts = lane().route("demo.events", [wire(contract, event(1)), wire(contract, event(2, region=None))])
    assert topic == "demo.validated"
    assert verdicts == [(b"e1", event(1)["event_time_ms"]), (b"e2", event(2)["event_time_ms"])]


@native
@pytest.mark.parametrize(
    "value",
    [
        event(1, x0=10.5),  # above the maximum
        event(1, region="mars"),  # not an allowed category
        event(1, event_id="  "),  # a blank id
        event(1, event_time_ms=0),  # not a positive time
        event(1, x1=None),  # a required feature missing
        event(1, x2=float("nan")),
    ],
)
def test_invalid_events_are_left_to_the_ordinary_path(value: dict[str, Any]) -> None:
    assert lane().route("demo.events", [wire(demo_contract(), value)])[1] == [None]


@native
def test_bytes_it_cannot_vouch_for_are_left_to_the_ordinary_path() -> None:
    good = wire(demo_contract(), event(1))
    odd = [b"", b"\x00", good[:-1], good + b"\x00", wire(demo_contract(), event(1), schema_id=SCHEMA_ID + 1), None]
    assert lane().route("demo.events", odd)[1] == [None] * len(odd)


@native
def test_it_stands_aside_until_the_reference_profile_is_complete() -> None:
    fast = lane(reference_size=2)
    values = [wire(demo_contract(), event(i)) for i in range(3)]
    assert fast.route("demo.events", values)[1] == [None, None, None]
    fast.handler.profiles["demo"].observe_values([event(0), event(1)])
    assert None not in fast.route("demo.events", values)[1]


@native
def test_a_sample_is_decoded_into_the_running_profile_with_its_offsets() -> None:
    fast = lane()
    fast.observe("demo.events", [(wire(demo_contract(), event(i)), 0, 100 + i) for i in range(4)])
    running = fast.handler.profiles["demo"].running
    assert running.count == 4
    assert running.offsets == {0: [100, 103]}
    assert running.features["x0"].count == 4


def test_unknown_topics_and_unbuilt_streams_take_the_ordinary_path() -> None:
    handler = ValidateBatch({"demo": demo_contract()}, ValidationConfig(reference_size=0))
    no_ids = FastValidation(handler, {})
    assert no_ids.streams == []
    assert no_ids.route("demo.events", [b"x"]) == ("", [None])
