"""Columns decoded in bulk hold what decoding each value to a dict gives, on the native path and off it."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from eddy.avro.columns import decode_columns, field_types, numeric_fields
from eddy.avro.native import NATIVE
from eddy.avro.serde import SerdeError, TopicSerde
from hypothesis import given, settings
from hypothesis import strategies as st

MIXED = {
    "type": "record",
    "name": "Mixed",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "t", "type": "long"},
        {"name": "n", "type": "int"},
        {"name": "x", "type": ["null", "double"]},
        {"name": "flag", "type": "boolean"},
        {"name": "label", "type": ["null", "boolean", "long", "double", "string"]},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
# An enum keeps the schema off the native codec (the checker's walker decodes it): the column path is Python's.
WITH_ENUM = {
    "type": "record",
    "name": "WithEnum",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "t", "type": "long"},
        {"name": "x", "type": ["null", "double"]},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    ],
}


def serde_of(schema: dict[str, Any], codec: str = "fast", url: str = "mock://columns") -> TopicSerde:
    return TopicSerde(SchemaRegistryClient.new_client({"url": url}), "cols.validated", json.dumps(schema), codec)


def expected_columns(serde: TopicSerde, values: list[bytes], wanted: dict[str, str]) -> list[tuple[Any, ...]]:
    """Per value: None where it does not decode, else each wanted field as its column should hold it."""
    rows: list[tuple[Any, ...]] = []
    for raw in values:
        try:
            record = serde.decode(raw)
        except SerdeError:
            rows.append((None,))
            continue
        cells: list[Any] = []
        for name, kind in wanted.items():
            value = record.get(name)
            if kind == "object":
                cells.append(value)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
                cells.append(("null",) if not ok else value)
            else:
                cells.append(("null",) if not isinstance(value, int | float) else float(value))
        rows.append(tuple(cells))
    return rows


def actual_columns(serde: TopicSerde, values: list[bytes], wanted: dict[str, str]) -> list[tuple[Any, ...]]:
    doubles = [f for f, k in wanted.items() if k == "double"]
    ints = [f for f, k in wanted.items() if k == "int"]
    objects = [f for f, k in wanted.items() if k == "object"]
    cols = decode_columns(serde, values, doubles, ints, objects)
    rows: list[tuple[Any, ...]] = []
    for i in range(len(values)):
        if not cols.decoded[i]:
            rows.append((None,))
            continue
        cells: list[Any] = []
        for name, kind in wanted.items():
            if kind == "object":
                cells.append(cols.objects[name][i])
            elif cols.nulls[name][i]:
                cells.append(("null",))
            else:
                cells.append(cols.numbers[name][i].item())
        rows.append(tuple(cells))
    return rows


def mixed(i: int, **overrides: Any) -> dict[str, Any]:
    base = {"id": f"é{i}", "t": 10**12 + i, "n": -i, "x": i / 3, "flag": i % 2 == 0, "label": i % 2 == 1}
    return {**base, "tags": {"k": str(i)}, "note": None, **overrides}


MIXED_WANTED = {"id": "object", "t": "int", "n": "double", "x": "double", "flag": "double", "label": "object"}


@pytest.mark.parametrize("codec", ["fast", "confluent"])
def test_columns_hold_what_each_record_decodes_to(codec: str) -> None:
    serde = serde_of(MIXED, codec)
    values = [serde.encode(mixed(i)) for i in range(5)]
    values += [
        serde.encode(mixed(5, x=None, label=None, note="n")),
        serde.encode(mixed(6, x=math.inf, label="cat", tags={})),
        serde.encode(mixed(7, x=-0.0, label=2.5, t=-(2**62))),
        b"",
        b"junk",
        b"\x00\x00\x00\x00\x01\xff",
        values_with_trailing_byte(serde),
    ]
    assert actual_columns(serde, values, MIXED_WANTED) == expected_columns(serde, values, MIXED_WANTED)


def values_with_trailing_byte(serde: TopicSerde) -> bytes:
    return serde.encode(mixed(9)) + b"\x00"


def test_a_double_column_of_a_union_with_strings_flags_the_strings() -> None:
    serde = serde_of(MIXED)
    values = [serde.encode(mixed(0, label=True)), serde.encode(mixed(1, label="cat")), serde.encode(mixed(2, label=3))]
    cols = decode_columns(serde, values, doubles=["label"])
    assert cols.decoded.tolist() == [True, True, True]
    assert cols.nulls["label"].tolist() == [False, True, False]
    assert cols.numbers["label"][[0, 2]].tolist() == [1.0, 3.0]


def test_values_of_an_older_writer_schema_are_decoded_through_the_registry() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://columns-evolve"})
    serde = TopicSerde(client, "cols.validated", json.dumps(MIXED))
    old = {**MIXED, "fields": [f for f in MIXED["fields"] if f["name"] != "note"]}
    old_id = client.register_schema("old-value", Schema(json.dumps(old), "AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), mixed(3))
    values = [serde.encode(mixed(1)), b"\x00" + old_id.to_bytes(4, "big") + body.getvalue()]
    cols = decode_columns(serde, values, doubles=["x"], ints=["t"], objects=["id", "note"])
    assert cols.decoded.tolist() == [True, True]
    assert cols.objects["id"] == ["é1", "é3"] and cols.objects["note"] == [None, None]
    assert cols.numbers["t"].tolist() == [10**12 + 1, 10**12 + 3]
    assert cols.schema_ids == {serde.schema_id, old_id}


def test_a_schema_off_the_native_codec_takes_the_python_path() -> None:
    serde = serde_of(WITH_ENUM, url="mock://columns-enum")
    assert serde.columns_natively([], [0, 0, 0, 0]) is None
    values = [serde.encode({"id": "a", "t": 1, "x": 0.5, "kind": "B"}), b"junk"]
    wanted = {"id": "object", "t": "int", "x": "double", "kind": "object"}
    assert actual_columns(serde, values, wanted) == [("a", 1, 0.5, "B"), (None,)]


def test_numeric_fields_are_those_of_only_number_types() -> None:
    serde = serde_of(MIXED)
    assert numeric_fields(serde) == ["t", "n", "x", "flag"]
    assert field_types(serde)["label"] == {"boolean", "long", "double", "string"}


@pytest.mark.skipif(not NATIVE, reason="the plan is the native codec's (not built, or EDDY_NATIVE=off)")
def test_a_plan_of_the_wrong_length_is_refused() -> None:
    serde = serde_of(MIXED)
    with pytest.raises(ValueError, match="plan"):
        serde.columns_natively([serde.encode(mixed(0))], [0, 0])


FINITE = st.floats(allow_nan=False, width=64)
RECORDS = st.builds(
    mixed,
    st.integers(0, 10**6),
    t=st.integers(-(2**63), 2**63 - 1),
    n=st.integers(-(2**31), 2**31 - 1),
    x=st.none() | st.floats(width=64),
    flag=st.booleans(),
    label=st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | FINITE | st.text(max_size=5),
    tags=st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3),
    note=st.none() | st.text(max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(RECORDS, max_size=12), st.lists(st.binary(max_size=12), max_size=3))
def test_columns_agree_with_decoding_for_any_records_and_junk(records: list[dict[str, Any]], junk: list[bytes]) -> None:
    serde = serde_of(MIXED, url="mock://columns-property")
    values = [serde.encode(r) for r in records] + junk
    got, want = actual_columns(serde, values, MIXED_WANTED), expected_columns(serde, values, MIXED_WANTED)
    # NaN != NaN: compare their text.
    assert repr(got) == repr(want)
