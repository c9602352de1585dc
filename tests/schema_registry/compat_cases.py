"""Table of schema-evolution cases with verdicts derived from the Avro specification.

Each case states the *Schema Resolution* rule (Avro 1.11/1.12 specification)
that decides it. BACKWARD means "the candidate, as reader, can read data
written with the previous schema(s)"; FORWARD means "the previous schema(s),
as readers, can read data written with the candidate"; FULL is both.
Non-transitive levels look at the latest version only, transitive ones at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MISSING = object()


def fld(name: str, type_: Any, default: Any = _MISSING, aliases: list[str] | None = None) -> dict[str, Any]:
    """Build a record field."""
    out: dict[str, Any] = {"name": name, "type": type_}
    if default is not _MISSING:
        out["default"] = default
    if aliases:
        out["aliases"] = aliases
    return out


def rec(name: str, *fields: dict[str, Any], namespace: str | None = None, aliases: list[str] | None = None) -> str:
    """Build a record schema as JSON text."""
    out: dict[str, Any] = {"type": "record", "name": name, "fields": list(fields)}
    if namespace is not None:
        out["namespace"] = namespace
    if aliases:
        out["aliases"] = aliases
    return json.dumps(out)


def enum(name: str, symbols: list[str], default: str | None = None, aliases: list[str] | None = None) -> Any:
    """Build an enum type (as a JSON value, for use inside fields)."""
    out: dict[str, Any] = {"type": "enum", "name": name, "symbols": symbols}
    if default is not None:
        out["default"] = default
    if aliases:
        out["aliases"] = aliases
    return out


def one(type_: Any) -> str:
    """Wrap a type in a one-field record ``R { v: type_ }``."""
    return rec("R", fld("v", type_))


@dataclass(frozen=True)
class Case:
    """One evolution case: history (oldest first), candidate, level, expected verdict."""

    id: str
    history: tuple[str, ...]
    candidate: str
    level: str
    compatible: bool
    rule: str


A = fld("a", "int")
LIST_NODE = {
    "type": "record",
    "name": "Node",
    "fields": [fld("value", "int"), fld("next", ["null", "Node"], None)],
}
LIST_NODE_LONG = {
    "type": "record",
    "name": "Node",
    "fields": [fld("value", "long"), fld("next", ["null", "Node"], None)],
}
LIST_NODE_EXTRA = {
    "type": "record",
    "name": "Node",
    "fields": [fld("value", "int"), fld("next", ["null", "Node"], None), fld("tag", "string")],
}

CASES: tuple[Case, ...] = (
    Case(
        "add-field-with-default",
        (rec("R", A),),
        rec("R", A, fld("b", "int", 0)),
        "BACKWARD",
        True,
        "reader field missing in writer but with a default: the default is used",
    ),
    Case(
        "add-field-without-default",
        (rec("R", A),),
        rec("R", A, fld("b", "int")),
        "BACKWARD",
        False,
        "reader field missing in writer and without default: error",
    ),
    Case(
        "add-nullable-field-null-default",
        (rec("R", A),),
        rec("R", A, fld("b", ["null", "string"], None)),
        "BACKWARD",
        True,
        "reader field with (null) default absent from writer: default used",
    ),
    Case(
        "remove-field-backward",
        (rec("R", A, fld("b", "int")),),
        rec("R", A),
        "BACKWARD",
        True,
        "writer field not present in the reader record is ignored",
    ),
    Case(
        "remove-field-no-default-forward",
        (rec("R", A, fld("b", "int")),),
        rec("R", A),
        "FORWARD",
        False,
        "old reader's field b (no default) is missing from the new writer: error",
    ),
    Case(
        "remove-field-with-default-forward",
        (rec("R", A, fld("b", "int", 1)),),
        rec("R", A),
        "FORWARD",
        True,
        "old reader's field b has a default, so its absence in the new writer is fine",
    ),
    Case(
        "add-field-no-default-forward",
        (rec("R", A),),
        rec("R", A, fld("b", "int")),
        "FORWARD",
        True,
        "new writer's extra field is ignored by the old reader",
    ),
    Case(
        "add-field-with-default-full",
        (rec("R", A),),
        rec("R", A, fld("b", "int", 0)),
        "FULL",
        True,
        "both directions: default covers backward, extra writer field ignored forward",
    ),
    Case(
        "add-field-without-default-full",
        (rec("R", A),),
        rec("R", A, fld("b", "int")),
        "FULL",
        False,
        "backward direction fails: reader field without default missing in writer",
    ),
    Case("promote-int-to-long", (one("int"),), one("long"), "BACKWARD", True, "int is promotable to long"),
    Case("promote-int-to-double", (one("int"),), one("double"), "BACKWARD", True, "int is promotable to double"),
    Case("promote-long-to-float", (one("long"),), one("float"), "BACKWARD", True, "long is promotable to float"),
    Case("promote-float-to-double", (one("float"),), one("double"), "BACKWARD", True, "float is promotable to double"),
    Case(
        "narrow-long-to-int",
        (one("long"),),
        one("int"),
        "BACKWARD",
        False,
        "no promotion from long to int: schemas do not match",
    ),
    Case(
        "narrow-double-to-float", (one("double"),), one("float"), "BACKWARD", False, "no promotion from double to float"
    ),
    Case(
        "widen-int-to-long-forward",
        (one("int"),),
        one("long"),
        "FORWARD",
        False,
        "old int reader cannot read a long writer (no long->int promotion)",
    ),
    Case("string-to-bytes", (one("string"),), one("bytes"), "BACKWARD", True, "string is promotable to bytes"),
    Case("bytes-to-string", (one("bytes"),), one("string"), "BACKWARD", True, "bytes is promotable to string"),
    Case(
        "int-to-string",
        (one("int"),),
        one("string"),
        "BACKWARD",
        False,
        "different primitive types with no promotion do not match",
    ),
    Case(
        "rename-field-with-alias",
        (rec("R", fld("old", "int")),),
        rec("R", fld("new", "int", aliases=["old"])),
        "BACKWARD",
        True,
        "reader field aliases map the writer's field name to the reader's",
    ),
    Case(
        "rename-field-without-alias",
        (rec("R", fld("old", "int")),),
        rec("R", fld("new", "int")),
        "BACKWARD",
        False,
        "renamed reader field has no default and no matching writer field",
    ),
    Case(
        "rename-record-with-alias",
        (rec("Old", A, namespace="ns"),),
        rec("New", A, namespace="ns", aliases=["ns.Old"]),
        "BACKWARD",
        True,
        "reader record aliases rewrite the writer's record name",
    ),
    Case(
        "rename-record-without-alias",
        (rec("Old", A),),
        rec("New", A),
        "BACKWARD",
        False,
        "records must have the same name (or a reader alias)",
    ),
    Case(
        "change-namespace-only",
        (rec("R", A, namespace="a.b"),),
        rec("R", A, namespace="c.d"),
        "BACKWARD",
        True,
        "records match on the same (unqualified) name",
    ),
    Case(
        "enum-add-symbol",
        (one(enum("E", ["A", "B"])),),
        one(enum("E", ["A", "B", "C"])),
        "BACKWARD",
        True,
        "every writer symbol is present in the reader's enum",
    ),
    Case(
        "enum-remove-symbol",
        (one(enum("E", ["A", "B", "C"])),),
        one(enum("E", ["A", "B"])),
        "BACKWARD",
        False,
        "writer symbol C not in the reader's enum and the reader has no default: error",
    ),
    Case(
        "enum-remove-symbol-reader-default",
        (one(enum("E", ["A", "B", "C"])),),
        one(enum("E", ["UNKNOWN", "A", "B"], default="UNKNOWN")),
        "BACKWARD",
        True,
        "unknown writer symbol resolves to the reader's enum default",
    ),
    Case(
        "enum-add-symbol-forward",
        (one(enum("E", ["A", "B"])),),
        one(enum("E", ["A", "B", "C"])),
        "FORWARD",
        False,
        "old reader lacks the new writer symbol C and has no enum default",
    ),
    Case(
        "enum-add-symbol-forward-old-default",
        (one(enum("E", ["U", "A"], default="U")),),
        one(enum("E", ["U", "A", "B"], default="U")),
        "FORWARD",
        True,
        "old reader's enum default covers the new symbol B",
    ),
    Case(
        "enum-rename-with-alias",
        (one(enum("Old", ["A"])),),
        one(enum("New", ["A"], aliases=["Old"])),
        "BACKWARD",
        True,
        "enum names match through a reader alias",
    ),
    Case(
        "enum-rename-without-alias",
        (one(enum("Old", ["A"])),),
        one(enum("New", ["A"])),
        "BACKWARD",
        False,
        "enums must have the same (unqualified) name",
    ),
    Case(
        "fixed-size-change",
        (one({"type": "fixed", "name": "F", "size": 4}),),
        one({"type": "fixed", "name": "F", "size": 8}),
        "BACKWARD",
        False,
        "fixed types match only with equal sizes",
    ),
    Case(
        "fixed-rename",
        (one({"type": "fixed", "name": "F", "size": 4}),),
        one({"type": "fixed", "name": "G", "size": 4}),
        "BACKWARD",
        False,
        "fixed types match only with equal names",
    ),
    Case(
        "fixed-rename-with-alias",
        (one({"type": "fixed", "name": "F", "size": 4}),),
        one({"type": "fixed", "name": "G", "size": 4, "aliases": ["F"]}),
        "BACKWARD",
        True,
        "fixed names match through a reader alias",
    ),
    Case(
        "array-items-promoted",
        (one({"type": "array", "items": "int"}),),
        one({"type": "array", "items": "long"}),
        "BACKWARD",
        True,
        "arrays resolve their item schemas recursively (int -> long)",
    ),
    Case(
        "array-items-narrowed",
        (one({"type": "array", "items": "long"}),),
        one({"type": "array", "items": "int"}),
        "BACKWARD",
        False,
        "array items long -> int do not match",
    ),
    Case(
        "map-values-narrowed",
        (one({"type": "map", "values": "double"}),),
        one({"type": "map", "values": "float"}),
        "BACKWARD",
        False,
        "maps resolve their value schemas recursively (double -> float fails)",
    ),
    Case(
        "array-to-map",
        (one({"type": "array", "items": "string"}),),
        one({"type": "map", "values": "string"}),
        "BACKWARD",
        False,
        "an array and a map do not match",
    ),
    Case(
        "writer-union-to-non-union",
        (one(["null", "string"]),),
        one("string"),
        "BACKWARD",
        False,
        "writer union: the null branch does not match the reader's string",
    ),
    Case(
        "non-union-to-reader-union",
        (one("string"),),
        one(["null", "string"]),
        "BACKWARD",
        True,
        "reader union: its string branch matches the writer's string",
    ),
    Case(
        "union-branch-promoted",
        (one(["null", "int"]),),
        one(["null", "long"]),
        "BACKWARD",
        True,
        "each writer branch finds a reader branch (int -> long)",
    ),
    Case(
        "union-branch-removed",
        (one(["null", "int", "string"]),),
        one(["null", "int"]),
        "BACKWARD",
        False,
        "writer branch string has no matching reader branch",
    ),
    Case(
        "union-branch-added-forward",
        (one(["null", "string"]),),
        one(["null", "string", "int"]),
        "FORWARD",
        False,
        "old reader union has no branch for the new writer's int",
    ),
    Case(
        "nested-record-add-with-default",
        (rec("Outer", fld("inner", {"type": "record", "name": "Inner", "fields": [A]})),),
        rec("Outer", fld("inner", {"type": "record", "name": "Inner", "fields": [A, fld("b", "string", "")]})),
        "BACKWARD",
        True,
        "nested records resolve recursively; the new inner field has a default",
    ),
    Case(
        "nested-record-add-without-default",
        (rec("Outer", fld("inner", {"type": "record", "name": "Inner", "fields": [A]})),),
        rec("Outer", fld("inner", {"type": "record", "name": "Inner", "fields": [A, fld("b", "string")]})),
        "BACKWARD",
        False,
        "nested reader field without default missing from the writer",
    ),
    Case(
        "recursive-promote",
        (json.dumps(LIST_NODE),),
        json.dumps(LIST_NODE_LONG),
        "BACKWARD",
        True,
        "recursive record resolves recursively through the named reference (int -> long)",
    ),
    Case(
        "recursive-add-without-default",
        (json.dumps(LIST_NODE),),
        json.dumps(LIST_NODE_EXTRA),
        "BACKWARD",
        False,
        "recursive record gains a field without default",
    ),
    Case(
        "named-reference-enum-shrinks",
        (rec("R", fld("x", enum("E", ["A", "B"])), fld("y", "E")),),
        rec(
            "R",
            fld(
                "x",
                enum(
                    "E",
                    ["A"],
                ),
            ),
            fld("y", "E"),
        ),
        "BACKWARD",
        False,
        "a named type referenced twice resolves like its definition: symbol B is missing",
    ),
    Case(
        "logical-date-to-int",
        (one({"type": "int", "logicalType": "date"}),),
        one("int"),
        "BACKWARD",
        True,
        "logical types are ignored: the underlying int matches",
    ),
    Case(
        "logical-decimal-scale-change",
        (one({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}),),
        one({"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 3}),
        "BACKWARD",
        True,
        "logical types are ignored: both are bytes (as Confluent does)",
    ),
    Case(
        "backward-vs-latest-only",
        (rec("R", A), rec("R", A, fld("b", "int", 0))),
        rec("R", A, fld("b", "int")),
        "BACKWARD",
        True,
        "non-transitive: only the latest version (which has b) is the writer",
    ),
    Case(
        "backward-transitive-vs-all",
        (rec("R", A), rec("R", A, fld("b", "int", 0))),
        rec("R", A, fld("b", "int")),
        "BACKWARD_TRANSITIVE",
        False,
        "transitive: version 1 lacks b and the candidate's b has no default",
    ),
    Case(
        "forward-vs-latest-only",
        (rec("R", A, fld("c", "int")), rec("R", A, fld("c", "int", 0))),
        rec("R", A),
        "FORWARD",
        True,
        "non-transitive: latest reader's c has a default",
    ),
    Case(
        "forward-transitive-vs-all",
        (rec("R", A, fld("c", "int")), rec("R", A, fld("c", "int", 0))),
        rec("R", A),
        "FORWARD_TRANSITIVE",
        False,
        "transitive: version 1 reader's c has no default and the new writer lacks it",
    ),
    Case(
        "full-vs-latest-only",
        (rec("R", A, fld("x", "string", "")), rec("R", A)),
        rec("R", A, fld("x", "int", 0)),
        "FULL",
        True,
        "against the latest only: default covers backward, extra writer field ignored forward",
    ),
    Case(
        "full-transitive-vs-all",
        (rec("R", A, fld("x", "string", "")), rec("R", A)),
        rec("R", A, fld("x", "int", 0)),
        "FULL_TRANSITIVE",
        False,
        "version 1 has x as string: int x does not match it",
    ),
    Case(
        "full-transitive-ok",
        (rec("R", A), rec("R", A, fld("b", "int", 0))),
        rec("R", A, fld("b", "int", 0), fld("c", "long", 0)),
        "FULL_TRANSITIVE",
        True,
        "only defaulted fields are added, so every pair resolves both ways",
    ),
    Case("none-allows-anything", (one("int"),), one("string"), "NONE", True, "level NONE performs no check"),
    Case("empty-history", (), one("string"), "FULL_TRANSITIVE", True, "nothing to be compatible with"),
)
