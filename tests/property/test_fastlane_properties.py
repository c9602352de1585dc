"""Properties of validation's native fast lane, against the Python decoder and ``check_record``.

The lane may only vouch for records the ordinary path would accept, with the
same key, event time and decoded value; and it should vouch for every such
record but the few it leaves to Python on purpose (integers beyond 2**53).
Records come from the validator's own generators (conforming, broken, mutated,
anything Avro can carry), and then from corrupting the bytes of valid ones.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from eddy.avro.native import NATIVE, checker
from eddy.contracts.checks import check_record
from eddy.contracts.stream import StreamContract
from eddy.services.validation.fastlane import compile_program
from hypothesis import given
from hypothesis import strategies as st

from tests.property.test_validator_properties import PROPERTY, any_record, conforming_record, contracts

pytestmark = pytest.mark.skipif(not NATIVE, reason="the native extension was not built (no C compiler)")

HEADER = struct.pack(">bI", 0, 7)
EXACT_INT = 2**53


def encode(contract: StreamContract, record: dict[str, Any]) -> bytes | None:
    """The record in the wire format, or None when Avro cannot carry it."""
    out = io.BytesIO()
    out.write(HEADER)
    try:
        fastavro.schemaless_writer(out, fastavro.parse_schema(contract.event_schema, named_schemas={}), record)
    except Exception:
        return None
    return out.getvalue()


def python_path(contract: StreamContract, data: bytes) -> dict[str, Any] | None:
    """What the ordinary path makes of ``data``: the decoded valid record, or None (undecodable or invalid)."""
    if data[:5] != HEADER:
        return None
    body = io.BytesIO(data)
    body.seek(5)
    try:
        value = fastavro.schemaless_reader(body, fastavro.parse_schema(contract.event_schema, named_schemas={}), None)
    except Exception:
        return None
    if body.tell() != len(data) or not isinstance(value, dict):
        return None
    return value if check_record(value, contract) == [] else None


def left_to_python(contract: StreamContract, value: dict[str, Any]) -> bool:
    """Valid records the lane leaves to Python on purpose: integer features too large to compare exactly."""
    return any(
        type(value.get(f.name)) is int and abs(value[f.name]) > EXACT_INT
        for f in contract.features
        if f.type in ("double", "long")
    )


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, dicts with their keys in the same order, NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_agrees(contract: StreamContract, checker: Any, data: bytes, complete: bool = True) -> None:
    """The lane's verdict is sound and, with ``complete``, vouches for every valid record it should.

    Corrupted bytes are only checked for soundness: the lane rightly leaves odd encodings that the
    Python decoder tolerates (a boolean byte of 2, an overlong varint) to the ordinary path.
    """
    verdict = checker.check([data])[0]
    decoded = checker.decode([data])[0]
    expected = python_path(contract, data)
    if verdict is not None:
        assert expected is not None, f"the lane vouched for a record the ordinary path refuses: {data!r}"
        assert verdict == (expected[contract.id_field].encode(), expected[contract.time_field])
        assert same(decoded, expected)
    else:
        assert decoded is None
        assert not complete or expected is None or left_to_python(contract, expected), (
            f"valid record not vouched for: {expected}"
        )


@PROPERTY
@given(st.data())
def test_the_lane_agrees_with_the_ordinary_path(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    walker = checker(HEADER, compile_program(contract))
    record = data.draw(any_record(contract))
    encoded = encode(contract, record)
    if encoded is not None:
        assert_agrees(contract, walker, encoded)


@PROPERTY
@given(st.data())
def test_every_conforming_record_is_vouched_for(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    walker = checker(HEADER, compile_program(contract))
    record = data.draw(conforming_record(contract))
    encoded = encode(contract, record)
    assert encoded is not None
    expected = python_path(contract, encoded)
    assert expected is not None
    if not left_to_python(contract, expected):
        assert walker.check([encoded]) == [(expected[contract.id_field].encode(), expected[contract.time_field])]


@PROPERTY
@given(st.data())
def test_corrupted_bytes_are_never_vouched_for_wrongly(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    walker = checker(HEADER, compile_program(contract))
    encoded = encode(contract, data.draw(conforming_record(contract)))
    assert encoded is not None
    raw = bytearray(encoded)
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "splice", "header"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    elif how == "append":
        raw += data.draw(st.binary(min_size=1, max_size=8))
    elif how == "splice":
        at = data.draw(st.integers(5, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        raw[1:5] = struct.pack(">I", data.draw(st.integers(0, 2**32 - 1).filter(lambda i: i != 7)))
    assert_agrees(contract, walker, bytes(raw), complete=False)
