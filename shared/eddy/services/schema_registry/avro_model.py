"""In-memory model of a parsed Avro schema.

Named types are resolved into shared objects, so recursive schemas become
cyclic object graphs; identity (``is``) therefore means "the same definition".
Logical types are kept only as properties: they never change the ``kind``,
which is what schema resolution looks at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

PRIMITIVE_KINDS: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

NO_DEFAULT: Final[object] = object()
"""Sentinel for a field without a ``default`` (``None`` is the JSON ``null`` default)."""


def short_name(fullname: str) -> str:
    """Return the unqualified part of a full name (``a.b.C`` -> ``C``)."""
    return fullname.rsplit(".", 1)[-1]


def namespace_of(fullname: str) -> str:
    """Return the namespace part of a full name (``a.b.C`` -> ``a.b``, ``C`` -> ``""``)."""
    return fullname.rsplit(".", 1)[0] if "." in fullname else ""


@dataclass(eq=False)
class Primitive:
    """A primitive type, possibly annotated (e.g. with a logical type)."""

    kind: str
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Field:
    """A record field."""

    name: str
    type: AvroType
    default: Any = NO_DEFAULT
    doc: str | None = None
    order: str = "ascending"
    aliases: tuple[str, ...] = ()
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def has_default(self) -> bool:
        """Whether the field declares a default value (``null`` counts)."""
        return self.default is not NO_DEFAULT


@dataclass(eq=False)
class Record:
    """A record (or protocol ``error``) type; ``fields`` is filled after creation for recursion."""

    fullname: str
    aliases: tuple[str, ...] = ()
    doc: str | None = None
    fields: list[Field] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)
    kind: str = "record"


@dataclass(eq=False)
class Enum:
    """An enum type."""

    fullname: str
    symbols: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    doc: str | None = None
    default: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    kind: str = "enum"


@dataclass(eq=False)
class Fixed:
    """A fixed-size bytes type."""

    fullname: str
    size: int
    aliases: tuple[str, ...] = ()
    doc: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    kind: str = "fixed"


@dataclass(eq=False)
class Array:
    """An array type."""

    items: AvroType
    props: dict[str, Any] = field(default_factory=dict)
    kind: str = "array"


@dataclass(eq=False)
class Map:
    """A map type (keys are always strings)."""

    values: AvroType
    props: dict[str, Any] = field(default_factory=dict)
    kind: str = "map"


@dataclass(eq=False)
class UnionType:
    """A union of branch types."""

    branches: list[AvroType]
    kind: str = "union"


NamedType: TypeAlias = Record | Enum | Fixed
AvroType: TypeAlias = Primitive | Record | Enum | Fixed | Array | Map | UnionType
