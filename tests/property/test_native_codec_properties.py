"""The native codec writes what fastavro writes, byte for byte, and reads what fastavro reads.

Records are generated from the schemas themselves: every primitive, union
branch and map, with the values that make union resolution interesting (bools
beside longs, ints beside doubles, ints beyond 64 bits, NaN and infinities).
Where the encoder declines (returns None), fastavro's path takes over; it must
not decline ordinary records.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pytest
from eddy.avro import native
from eddy.core.settings import REPO_ROOT
from hypothesis import given
from hypothesis import strategies as st

from tests.property.test_fastlane_properties import same
from tests.property.test_validator_properties import PROPERTY

pytestmark = pytest.mark.skipif(not native.NATIVE, reason="the native extension was not built (no C compiler)")

HEADER = struct.pack(">bI", 0, 3)
SCHEMAS = sorted((REPO_ROOT / "schemas").glob("*.avsc")) + sorted((REPO_ROOT / "schemas/streams").glob("*.avsc"))


def encodable(path: Any) -> bool:
    try:
        native.encoder_fields(json.loads(path.read_text()))
    except native.Unsupported:
        return False
    return True


NATIVE_SCHEMAS = [p for p in SCHEMAS if encodable(p)]


def values_of(avro: Any) -> st.SearchStrategy[Any]:
    if isinstance(avro, list):
        return st.one_of(*(values_of(branch) for branch in avro))
    if isinstance(avro, dict):
        if avro["type"] == "map":
            return st.dictionaries(st.text(max_size=6), values_of(avro["values"]), max_size=4)
        return values_of(avro["type"])
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats() | st.integers(-(2**60), 2**60),
        "string": st.text(max_size=12),
    }[avro]


def draw_record(path: Any, data: st.DataObject) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema in ``path`` and a record drawn for it."""
    schema = json.loads(path.read_text())
    return schema, {f["name"]: data.draw(values_of(f["type"])) for f in schema["fields"]}


def beyond_64_bits(record: dict[str, Any]) -> bool:
    """Whether an int of ``record`` is too large for a long (fastavro then writes it in the double branch)."""
    scalars: list[Any] = []
    for value in record.values():
        scalars.extend(value.values() if isinstance(value, dict) else [value])
    return any(type(v) is int and not -(2**63) <= v < 2**63 for v in scalars)


def fastavro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(HEADER)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    return out.getvalue()


def test_the_platform_schemas_that_matter_are_encoded_natively() -> None:
    names = {p.name for p in NATIVE_SCHEMAS}
    assert {"prediction.avsc", "feedback.avsc", "labeled.avsc", "demo.avsc"} <= names


@pytest.mark.parametrize("path", NATIVE_SCHEMAS, ids=lambda p: p.name)
@PROPERTY
@given(data=st.data())
def test_native_bytes_equal_fastavro_bytes(path: Any, data: st.DataObject) -> None:
    schema, record = draw_record(path, data)
    encoded = native.codec(HEADER, schema).encode(record)
    if encoded is not None:
        assert encoded == fastavro_bytes(schema, record)


@pytest.mark.parametrize("path", NATIVE_SCHEMAS, ids=lambda p: p.name)
@PROPERTY
@given(data=st.data())
def test_ordinary_records_are_not_declined(path: Any, data: st.DataObject) -> None:
    schema, record = draw_record(path, data)
    if not beyond_64_bits(record):
        assert native.codec(HEADER, schema).encode(record) is not None, json.dumps(record, default=str)


def test_missing_fields_and_foreign_types_are_left_to_fastavro() -> None:
    schema = json.loads((REPO_ROOT / "schemas/feedback.avsc").read_text())
    encoder = native.codec(HEADER, schema)
    assert encoder.encode({}) is None
    assert encoder.encode([]) is None


@pytest.mark.parametrize("path", NATIVE_SCHEMAS, ids=lambda p: p.name)
@PROPERTY
@given(data=st.data())
def test_native_decoding_equals_fastavro_decoding(path: Any, data: st.DataObject) -> None:
    schema, record = draw_record(path, data)
    if beyond_64_bits(record):
        return
    encoded = fastavro_bytes(schema, record)
    body = io.BytesIO(encoded[5:])
    expected = fastavro.schemaless_reader(body, fastavro.parse_schema(schema, named_schemas={}), None)
    assert same(native.codec(HEADER, schema).decode([encoded])[0], expected)
    # Cut short or with bytes to spare, a record is left to fastavro (which refuses it).
    assert native.codec(HEADER, schema).decode([encoded[:-1], encoded + b"\x00"]) == [None, None]
