"""Parse and validate Avro schema text into the :mod:`avro_model` graph.

fastavro is the first gate (it is what the Confluent Python serializers use to
read schemas back, so anything it rejects would be unusable). It is lenient in
places where the Avro specification and the Java implementation behind
Confluent are strict (duplicate field names, invalid names, union defaults,
duplicate union branches), so a structural pass here enforces those rules too.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any, Final

import fastavro

from .avro_model import (
    NO_DEFAULT,
    PRIMITIVE_KINDS,
    Array,
    AvroType,
    Enum,
    Field,
    Fixed,
    Map,
    NamedType,
    Primitive,
    Record,
    UnionType,
    namespace_of,
)

_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORDERS: Final = frozenset({"ascending", "descending", "ignore"})
_RESERVED: Final[dict[str, frozenset[str]]] = {
    "record": frozenset({"type", "name", "namespace", "doc", "aliases", "fields"}),
    "enum": frozenset({"type", "name", "namespace", "doc", "aliases", "symbols", "default"}),
    "fixed": frozenset({"type", "name", "namespace", "doc", "aliases", "size"}),
    "array": frozenset({"type", "items"}),
    "map": frozenset({"type", "values"}),
    "primitive": frozenset({"type"}),
    "field": frozenset({"name", "type", "doc", "default", "order", "aliases"}),
}
_INT_RANGE: Final = (-(2**31), 2**31 - 1)
_LONG_RANGE: Final = (-(2**63), 2**63 - 1)
_FLOAT_WORDS: Final = frozenset({"NaN", "Infinity", "-Infinity"})


class SchemaParseError(ValueError):
    """Raised for schema text that is not a valid Avro schema."""


def parse_schema(text: str) -> AvroType:
    """Parse Avro schema JSON text into a resolved type graph.

    Parameters
    ----------
    text : str
        The schema as JSON text (e.g. ``'"string"'`` or a record object).

    Returns
    -------
    AvroType
        The root of the resolved schema graph.

    Raises
    ------
    SchemaParseError
        If the text is not JSON or not a valid Avro schema.
    """
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise SchemaParseError(f"Invalid schema: not valid JSON ({exc})") from exc
    try:
        fastavro.parse_schema(copy.deepcopy(raw))
    except Exception as exc:
        # fastavro raises a zoo of types (KeyError for a missing attribute,
        # UnknownType, SchemaParseException, TypeError); all mean "invalid".
        raise SchemaParseError(f"Invalid schema: {_describe(exc)}") from exc
    try:
        return _Parser().parse(raw, "")
    except RecursionError as exc:
        raise SchemaParseError("Invalid schema: nested too deeply") from exc


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity literals, which are not JSON and would
    # make the stored schema unreadable for other parsers.
    raise ValueError(f"{name} is not valid JSON")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing required attribute {exc}"
    return f"{type(exc).__name__}: {exc}"


def _fail(message: str) -> SchemaParseError:
    return SchemaParseError(f"Invalid schema: {message}")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(f"invalid {what} {name!r}")
    return name


def _qualify(name: str, namespace: str) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


class _Parser:
    """One-shot parser holding the named types defined so far."""

    def __init__(self) -> None:
        self._names: dict[str, NamedType] = {}

    def parse(self, node: Any, namespace: str) -> AvroType:
        if isinstance(node, str):
            if node in PRIMITIVE_KINDS:
                return Primitive(node)
            return self._reference(node, namespace)
        if isinstance(node, list):
            return self._union(node, namespace)
        if isinstance(node, dict):
            return self._object(node, namespace)
        raise _fail(f"a schema must be a string, an array or an object, not {node!r}")

    def _reference(self, name: str, namespace: str) -> AvroType:
        # Like Avro Java: try the enclosing namespace first, then the null namespace.
        for candidate in (_qualify(name, namespace), name):
            found = self._names.get(candidate)
            if found is not None:
                return found
        raise _fail(f"undefined name {name!r}")

    def _object(self, node: dict[str, Any], namespace: str) -> AvroType:
        kind = node.get("type")
        if not isinstance(kind, str):
            raise _fail(f"'type' must be a string in {json.dumps(node)[:200]}")
        props = self._props(node, "primitive")
        if kind in PRIMITIVE_KINDS:
            return Primitive(kind, props)
        if kind in ("record", "error"):
            return self._record(node, namespace)
        if kind == "enum":
            return self._enum(node, namespace)
        if kind == "fixed":
            return self._fixed(node, namespace)
        if kind == "array":
            if "items" not in node:
                raise _fail("array is missing 'items'")
            return Array(self.parse(node["items"], namespace), self._props(node, "array"))
        if kind == "map":
            if "values" not in node:
                raise _fail("map is missing 'values'")
            return Map(self.parse(node["values"], namespace), self._props(node, "map"))
        return self._reference(kind, namespace)

    def _props(self, node: dict[str, Any], what: str) -> dict[str, Any]:
        reserved = _RESERVED[what]
        return {k: v for k, v in node.items() if k not in reserved}

    def _define(self, node: dict[str, Any], namespace: str) -> tuple[str, tuple[str, ...], str | None]:
        name = node.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"named type without a valid 'name': {json.dumps(node)[:200]}")
        explicit_ns = node.get("namespace")
        if explicit_ns is not None and not isinstance(explicit_ns, str):
            raise _fail(f"invalid namespace {explicit_ns!r}")
        if "." in name:
            fullname = name
        else:
            ns = explicit_ns if explicit_ns is not None else namespace
            fullname = _qualify(name, ns)
        for part in fullname.split("."):
            _check_name(part, "name component")
        if fullname in PRIMITIVE_KINDS:
            raise _fail(f"a named type may not be called {fullname!r}")
        if fullname in self._names:
            raise _fail(f"can't redefine {fullname!r}")
        own_ns = namespace_of(fullname)
        raw_aliases = node.get("aliases", [])
        if not isinstance(raw_aliases, list):
            raise _fail(f"aliases of {fullname!r} must be a list")
        aliases = []
        for alias in raw_aliases:
            if not isinstance(alias, str):
                raise _fail(f"invalid alias {alias!r}")
            for part in alias.split("."):
                _check_name(part, "alias component")
            aliases.append(_qualify(alias, own_ns))
        doc = node.get("doc")
        return fullname, tuple(aliases), doc if isinstance(doc, str) else None

    def _record(self, node: dict[str, Any], namespace: str) -> Record:
        fullname, aliases, doc = self._define(node, namespace)
        record = Record(fullname, aliases, doc, [], self._props(node, "record"))
        # Registered before the fields so that recursive references resolve.
        self._names[fullname] = record
        raw_fields = node.get("fields")
        if not isinstance(raw_fields, list):
            raise _fail(f"record {fullname!r} must have a 'fields' list")
        seen: set[str] = set()
        own_ns = namespace_of(fullname)
        for raw in raw_fields:
            if not isinstance(raw, dict):
                raise _fail(f"field of {fullname!r} must be an object")
            name = _check_name(raw.get("name"), f"field name in {fullname!r}")
            if name in seen:
                raise _fail(f"duplicate field {name!r} in {fullname!r}")
            seen.add(name)
            if "type" not in raw:
                raise _fail(f"field {name!r} of {fullname!r} has no 'type'")
            ftype = self.parse(raw["type"], own_ns)
            default = raw.get("default", NO_DEFAULT)
            if default is not NO_DEFAULT and not _valid_default(ftype, default):
                raise _fail(f"invalid default for field {name!r} in {fullname!r}: {json.dumps(default)}")
            order = raw.get("order", "ascending")
            if order not in _ORDERS:
                raise _fail(f"invalid order {order!r} for field {name!r}")
            raw_aliases = raw.get("aliases", [])
            if not isinstance(raw_aliases, list) or not all(isinstance(a, str) for a in raw_aliases):
                raise _fail(f"aliases of field {name!r} must be a list of strings")
            doc = raw.get("doc")
            record.fields.append(
                Field(
                    name=name,
                    type=ftype,
                    default=default,
                    doc=doc if isinstance(doc, str) else None,
                    order=order,
                    aliases=tuple(raw_aliases),
                    props=self._props(raw, "field"),
                )
            )
        return record

    def _enum(self, node: dict[str, Any], namespace: str) -> Enum:
        fullname, aliases, doc = self._define(node, namespace)
        symbols = node.get("symbols")
        if not isinstance(symbols, list):
            raise _fail(f"enum {fullname!r} must have a 'symbols' list")
        for symbol in symbols:
            _check_name(symbol, f"symbol in enum {fullname!r}")
        if len(set(symbols)) != len(symbols):
            raise _fail(f"duplicate symbol in enum {fullname!r}")
        default = node.get("default")
        if default is not None and default not in symbols:
            raise _fail(f"default {default!r} of enum {fullname!r} is not one of its symbols")
        enum = Enum(fullname, tuple(symbols), aliases, doc, default, self._props(node, "enum"))
        self._names[fullname] = enum
        return enum

    def _fixed(self, node: dict[str, Any], namespace: str) -> Fixed:
        fullname, aliases, doc = self._define(node, namespace)
        size = node.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _fail(f"fixed {fullname!r} must have a non-negative integer 'size'")
        fixed = Fixed(fullname, size, aliases, doc, self._props(node, "fixed"))
        self._names[fullname] = fixed
        return fixed

    def _union(self, node: list[Any], namespace: str) -> UnionType:
        branches = [self.parse(item, namespace) for item in node]
        seen: set[str] = set()
        for branch in branches:
            if isinstance(branch, UnionType):
                raise _fail("unions may not immediately contain other unions")
            key = branch.fullname if isinstance(branch, Record | Enum | Fixed) else branch.kind
            if key in seen:
                raise _fail(f"duplicate type {key!r} in union")
            seen.add(key)
        return UnionType(branches)


def _valid_default(schema: AvroType, value: Any) -> bool:
    """Check a field default against its type (a union default matches its first branch)."""
    kind = schema.kind
    if isinstance(schema, UnionType):
        return bool(schema.branches) and _valid_default(schema.branches[0], value)
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        low, high = _INT_RANGE if kind == "int" else _LONG_RANGE
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind in ("float", "double"):
        if isinstance(value, str):
            return value in _FLOAT_WORDS
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind in ("bytes", "string"):
        return isinstance(value, str)
    if isinstance(schema, Fixed):
        return isinstance(value, str)
    if isinstance(schema, Enum):
        return value in schema.symbols
    if isinstance(schema, Array):
        return isinstance(value, list) and all(_valid_default(schema.items, v) for v in value)
    if isinstance(schema, Map):
        return isinstance(value, dict) and all(_valid_default(schema.values, v) for v in value.values())
    if isinstance(schema, Record):
        if not isinstance(value, dict):
            return False
        for f in schema.fields:
            if f.name in value:
                if not _valid_default(f.type, value[f.name]):
                    return False
            elif not f.has_default:
                return False
        return True
    return False
