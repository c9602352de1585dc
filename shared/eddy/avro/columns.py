"""Many values of a topic decoded straight into columns, for bulk reads.

A backtest reads a stream's whole history only to take a few fields of every
record: an id, a time, the numeric features. Building a dict per record and
taking it apart again was most of the read's time, so the native codec
(``Codec.columns`` in ``shared/eddy/native/avro_columns.c``) writes those fields into arrays
instead. Values it does not read entirely (another schema id, a schema the
codec does not serve, bad bytes) are decoded the ordinary way, one by one, and
their rows filled in; a value that does not decode at all is marked so.

Examples
--------
>>> from confluent_kafka.schema_registry import SchemaRegistryClient
>>> from eddy.avro.serde import TopicSerde
>>> schema = ('{"type": "record", "name": "E", "fields": [{"name": "id", "type": "string"},'
...           ' {"name": "t", "type": "long"}, {"name": "x", "type": ["null", "double"]}]}')
>>> serde = TopicSerde(SchemaRegistryClient.new_client({"url": "mock://columns-doc"}), "doc.validated", schema)
>>> values = [serde.encode({"id": "a", "t": 1, "x": 0.5}), b"junk", serde.encode({"id": "b", "t": 2, "x": None})]
>>> cols = decode_columns(serde, values, doubles=["x"], ints=["t"], objects=["id"])
>>> cols.decoded.tolist(), cols.objects["id"], cols.numbers["t"].tolist(), cols.nulls["x"].tolist()
([True, False, True], ['a', None, 'b'], [1, 0, 2], [False, True, True])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eddy.avro.serde import SerdeError, TopicSerde

# Column kinds, as numbered in shared/eddy/native/avro_columns.c.
SKIP, DOUBLE, INT64, OBJECT = 0, 1, 2, 3
NUMERIC_TYPES = frozenset({"boolean", "int", "long", "float", "double"})


@dataclass
class Columns:
    """Fields of many values: numbers as arrays with a null flag per row, anything else as lists.

    Rows where ``decoded`` is False are not records of the topic; their cells are meaningless.
    ``schema_ids`` are the writer schema ids of the values (read from their wire-format header).
    """

    decoded: np.ndarray
    numbers: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray]
    objects: dict[str, list[Any]]
    schema_ids: set[int]


def field_types(serde: TopicSerde) -> dict[str, set[str]]:
    """The non-null types of each field of ``serde``'s schema: a primitive's name, any other type as JSON."""
    out: dict[str, set[str]] = {}
    for field in serde.schema.get("fields", []):
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        names = [k["type"] if isinstance(k, dict) and set(k) == {"type"} else k for k in kinds]
        out[field["name"]] = {k if isinstance(k, str) else json.dumps(k, sort_keys=True) for k in names} - {"null"}
    return out


def numeric_fields(serde: TopicSerde) -> list[str]:
    """The fields of ``serde``'s schema whose every non-null type is a number (or a boolean)."""
    return [name for name, types in field_types(serde).items() if types and types <= NUMERIC_TYPES]


def decode_columns(
    serde: TopicSerde,
    values: Sequence[bytes | None],
    doubles: Sequence[str] = (),
    ints: Sequence[str] = (),
    objects: Sequence[str] = (),
) -> Columns:
    """Decode ``values`` into the columns asked for: float64 ``doubles``, int64 ``ints``, lists of ``objects``.

    A double column takes booleans, ints and doubles as ``float()`` gives them; an int column, ints. A
    null, a missing field or a value of another type is flagged in ``nulls`` (NaN or 0 in the array).
    """
    n = len(values)
    wanted = {**{f: DOUBLE for f in doubles}, **{f: INT64 for f in ints}, **{f: OBJECT for f in objects}}
    names = [field["name"] for field in serde.schema.get("fields", [])]
    native = serde.columns_natively(values, [wanted.get(name, SKIP) for name in names])
    if native is None:
        decoded = np.zeros(n, dtype=bool)
        numbers = {f: np.zeros(n, dtype=np.float64 if kind == DOUBLE else np.int64) for f, kind in wanted.items()}
        nulls = {f: np.ones(n, dtype=bool) for f, kind in wanted.items() if kind != OBJECT}
        lists: dict[str, list[Any]] = {f: [None] * n for f, kind in wanted.items() if kind == OBJECT}
    else:
        flags, found = native
        decoded = np.frombuffer(flags, dtype=np.uint8).astype(bool)
        numbers, nulls, lists = {}, {}, {}
        for name, column in zip(names, found, strict=True):
            kind = wanted.get(name, SKIP)
            if kind == OBJECT:
                lists[name] = column
            elif kind != SKIP:
                numbers[name] = np.frombuffer(column[0], dtype=np.float64 if kind == DOUBLE else np.int64)
                nulls[name] = np.frombuffer(column[1], dtype=np.uint8).astype(bool)
    schema_ids = {serde.schema_id} if decoded.any() else set()
    for i in np.flatnonzero(~decoded).tolist():
        raw = values[i] or b""
        if len(raw) >= 5:
            schema_ids.add(int.from_bytes(raw[1:5], "big"))
        try:
            record = serde.decode(raw)
        except SerdeError:
            continue
        decoded[i] = True
        for name, kind in wanted.items():
            value = record.get(name)
            if kind == OBJECT:
                lists[name][i] = value
            else:
                number = _number(value, kind)
                nulls[name][i] = number is None
                numbers[name][i] = (math.nan if kind == DOUBLE else 0) if number is None else number
    return Columns(decoded, numbers, nulls, lists, schema_ids)


def _number(value: Any, kind: int) -> float | int | None:
    """``value`` as its column holds it, or None where the column cannot hold it."""
    if kind == INT64:
        return value if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63 else None
    return float(value) if isinstance(value, int | float) else None
