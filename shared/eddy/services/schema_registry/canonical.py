"""Canonical JSON form of an Avro schema, used for equality and storage.

Avro's Parsing Canonical Form drops ``default``, ``aliases`` and ``doc``, which
would make "added a default" look like the same schema. Like Confluent (which
compares Avro Java's normalised ``toString``), this form keeps everything that
can matter to a reader and only erases presentation differences: whitespace,
attribute order, short-name + ``namespace`` versus full name,
``{"type": "int"}`` versus ``"int"`` and an explicit ``"order": "ascending"``.
"""

from __future__ import annotations

import json
from typing import Any

from .avro_model import (
    Array,
    AvroType,
    Enum,
    Field,
    Fixed,
    Map,
    Primitive,
    Record,
    UnionType,
    namespace_of,
)


def canonical_json(schema: AvroType) -> str:
    """Serialise a parsed schema to its canonical JSON text.

    Parameters
    ----------
    schema : AvroType
        Root of a parsed schema graph.

    Returns
    -------
    str
        Compact, deterministic JSON; equal for schemas that differ only in
        presentation, and itself a valid Avro schema.
    """
    return _dumps(_Emitter().emit(schema, ""))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _sorted_props(props: dict[str, Any]) -> dict[str, Any]:
    return {key: _normalise_json(props[key]) for key in sorted(props)}


def _normalise_json(value: Any) -> Any:
    # Object key order inside defaults/properties carries no meaning.
    if isinstance(value, dict):
        return {key: _normalise_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_normalise_json(v) for v in value]
    return value


class _Emitter:
    """Emits each named type in full once, then by name, like Avro writers do."""

    def __init__(self) -> None:
        self._emitted: set[str] = set()

    def emit(self, schema: AvroType, namespace: str) -> Any:
        if isinstance(schema, Primitive):
            if not schema.props:
                return schema.kind
            return {"type": schema.kind, **_sorted_props(schema.props)}
        if isinstance(schema, UnionType):
            return [self.emit(branch, namespace) for branch in schema.branches]
        if isinstance(schema, Array):
            return {"type": "array", "items": self.emit(schema.items, namespace), **_sorted_props(schema.props)}
        if isinstance(schema, Map):
            return {"type": "map", "values": self.emit(schema.values, namespace), **_sorted_props(schema.props)}
        return self._named(schema, namespace)

    def _named(self, schema: Record | Enum | Fixed, namespace: str) -> Any:
        fullname = schema.fullname
        if fullname in self._emitted:
            # A short name would resolve against the enclosing namespace, so a
            # type in the null namespace can only be referenced by its short name
            # and everything else is referenced by full name.
            return fullname
        self._emitted.add(fullname)
        out: dict[str, Any] = {"type": schema.kind, "name": fullname}
        if "." not in fullname and namespace:
            out["namespace"] = ""
        own_ns = namespace_of(fullname)
        if schema.doc is not None:
            out["doc"] = schema.doc
        if schema.aliases:
            out["aliases"] = list(schema.aliases)
        if isinstance(schema, Record):
            out["fields"] = [self._field(f, own_ns) for f in schema.fields]
        elif isinstance(schema, Enum):
            out["symbols"] = list(schema.symbols)
            if schema.default is not None:
                out["default"] = schema.default
        else:
            out["size"] = schema.size
        out.update(_sorted_props(schema.props))
        return out

    def _field(self, field: Field, namespace: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": field.name, "type": self.emit(field.type, namespace)}
        if field.doc is not None:
            out["doc"] = field.doc
        if field.has_default:
            out["default"] = _normalise_json(field.default)
        if field.order != "ascending":
            out["order"] = field.order
        if field.aliases:
            out["aliases"] = list(field.aliases)
        out.update(_sorted_props(field.props))
        return out
