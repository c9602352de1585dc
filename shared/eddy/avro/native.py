"""Native Avro for flat records: a checker/decoder and an encoder in C (``eddy.native._avro_native``).

fastavro spends most of its time per record resolving the schema, which a
record of a fixed, flat shape does not need. ``_avro_native`` runs a field
program compiled here from the schema instead. It serves three callers:

- validation's fast lane (``shared/eddy/services/validation/fastlane.py``) checks records
  against their contract without decoding them;
- ``eddy.avro.serde`` decodes and encodes records with it (flat records, maps of
  primitives), and falls back to fastavro for anything the native code does
  not vouch for.

The extension is optional: it is built at install time when a C compiler is
there, and without it, or with ``EDDY_NATIVE=off`` (``eddy.native``), ``NATIVE``
is False and everything runs on fastavro.

Examples
--------
>>> schema = {"type": "record", "name": "R", "fields": [
...     {"name": "id", "type": "string"}, {"name": "score", "type": ["null", "double"]}]}
>>> [op[:3] for op in decode_program(schema)]  # (name, kind, null branch)
[('id', 6, -1), ('score', 5, 0)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eddy.native import load

if TYPE_CHECKING:
    # mypy checks the calls below against the extension's stub (_avro_native.pyi) ...
    from eddy.native import _avro_native
else:
    # ... while at run time it is None without a C compiler at install time, or with EDDY_NATIVE=off.
    _avro_native = load("_avro_native")

NATIVE = _avro_native is not None

# Kinds and roles, as numbered in shared/eddy/native/avro_native.h and avro_checker.c.
KINDS = {
    "null": 0,
    "boolean": 1,
    "int": 2,
    "long": 3,
    "float": 4,
    "double": 5,
    "string": 6,
    "bytes": 7,
    "enum": 8,
    "fixed": 9,
}
OTHER, ID, TIME, FEATURE = 0, 1, 2, 3
# Kinds a field, union branch or map value may have in the codec.
ENCODABLE = ("null", "boolean", "int", "long", "double", "string")

# (name, kind, null_index, role, numeric, required, lo, hi, allowed, search, symbols, size), as _avro_native.pyi has it.
Op = tuple[
    str,
    int,
    int,
    int,
    bool,
    bool,
    float,
    float,
    frozenset[Any] | None,
    Callable[[str], object] | None,
    tuple[str, ...] | None,
    int,
]
# A field of the codec's program: (name, is_map, null index of a [null, map] union or -1, kind or union's kinds).
CodecField = tuple[str, bool, int, int | tuple[int, ...]]


class Unsupported(ValueError):
    """A schema the native code does not handle: its records go through fastavro."""


def field_type(avro: Any, named: dict[str, dict[str, Any]], namespace: str | None) -> tuple[int, int, Any]:
    """(null branch index or -1, kind, enum symbols or fixed size) of a field's type, for the checker."""
    null_index = -1
    if isinstance(avro, list):
        if len(avro) != 2 or "null" not in avro or avro[0] == avro[1]:
            raise Unsupported(f"union {avro} is not [null, T]")
        null_index = avro.index("null")
        avro = avro[1 - null_index]
    if isinstance(avro, str) and avro not in KINDS:
        if avro not in named:
            raise Unsupported(f"type {avro!r} is not a primitive, enum or fixed defined before")
        avro = named[avro]
    if isinstance(avro, dict):
        if "logicalType" in avro:
            raise Unsupported(f"logical type {avro['logicalType']!r} (decoded into a Python object)")
        kind_name = avro.get("type")
        if kind_name in ("enum", "fixed"):
            space = avro.get("namespace", namespace)
            for alias in (avro["name"], f"{space}.{avro['name']}" if space else avro["name"]):
                named[alias] = avro
            if kind_name == "enum":
                return null_index, KINDS["enum"], tuple(avro["symbols"])
            return null_index, KINDS["fixed"], int(avro["size"])
        if isinstance(kind_name, str) and kind_name in KINDS:
            return null_index, KINDS[kind_name], None
        raise Unsupported(f"type {kind_name!r} (nested records, arrays and maps are not walked)")
    if avro == "null" and null_index >= 0:
        raise Unsupported("union of null with null")
    return null_index, KINDS[avro], None


def plain_op(name: str, null_index: int, kind: int, extra: Any, role: int = OTHER) -> Op:
    """An op that only reads its field (no contract rule)."""
    return (
        name,
        kind,
        null_index,
        role,
        False,
        False,
        -math.inf,
        math.inf,
        None,
        None,
        extra if kind == KINDS["enum"] else None,
        extra if kind == KINDS["fixed"] else 0,
    )


def decode_program(schema: dict[str, Any]) -> list[Op]:
    """The checker program that decodes records of ``schema`` without judging them."""
    named: dict[str, dict[str, Any]] = {}
    ops = []
    for field in schema.get("fields", []):
        null_index, kind, extra = field_type(field["type"], named, schema.get("namespace"))
        ops.append(plain_op(field["name"], null_index, kind, extra))
    return ops


def encoder_fields(schema: dict[str, Any]) -> list[CodecField]:
    """The codec program of ``schema``: per field (name, is_map, null index of a [null, map] union, type).

    A type is a kind, or a tuple of kinds for a union of primitives.
    """
    fields: list[CodecField] = []
    for field in schema.get("fields", []):
        avro = field["type"]
        map_null = -1
        if isinstance(avro, list) and len(avro) == 2 and "null" in avro and _is_map(avro[1 - avro.index("null")]):
            map_null = avro.index("null")
            avro = avro[1 - map_null]
        if _is_map(avro):
            fields.append((field["name"], True, map_null, _value_type(avro["values"])))
        else:
            fields.append((field["name"], False, -1, _value_type(avro)))
    return fields


def _is_map(avro: Any) -> bool:
    return isinstance(avro, dict) and avro.get("type") == "map"


def _value_type(avro: Any) -> int | tuple[int, ...]:
    if isinstance(avro, list):
        if not 1 <= len(avro) <= 8 or len(set(map(str, avro))) != len(avro):
            raise Unsupported(f"union {avro}")
        return tuple(_primitive(branch) for branch in avro)
    return _primitive(avro)


def _primitive(avro: Any) -> int:
    if isinstance(avro, dict) and set(avro) == {"type"}:
        avro = avro["type"]
    if not isinstance(avro, str) or avro not in ENCODABLE:
        raise Unsupported(f"type {avro!r} is not encoded natively")
    return KINDS[avro]


def checker(header: bytes, ops: list[Op]) -> _avro_native.Checker:
    """A native ``Checker`` (``check`` and ``decode`` over lists of values)."""
    if _avro_native is None:
        raise Unsupported("the native extension was not built, or EDDY_NATIVE=off")
    return _avro_native.Checker(header, ops)


def codec(header: bytes, schema: dict[str, Any]) -> _avro_native.Codec:
    """A native ``Codec`` for ``schema``: ``encode`` one record, ``decode`` a list of values."""
    if _avro_native is None:
        raise Unsupported("the native extension was not built, or EDDY_NATIVE=off")
    return _avro_native.Codec(header, encoder_fields(schema))
