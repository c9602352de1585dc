"""Avro schema-resolution rules and Confluent compatibility levels (pure, no I/O).

The core question is the Avro specification's "can a reader using schema R
read data written with schema W". The checks follow the specification's
*Schema Resolution* section, in the form implemented by Avro Java's
``SchemaCompatibility`` (which Confluent Schema Registry uses):

* same primitive type, or a promotion: int -> long, float, double;
  long -> float, double; float -> double; string <-> bytes;
* records: names match (unqualified, or a reader alias equals the writer's
  full name); every reader field is found in the writer by name or by one of
  the reader field's aliases, else it must have a default; matched fields
  resolve recursively; writer-only fields are ignored;
* enums: names match; every writer symbol is a reader symbol, unless the
  reader declares an enum default;
* fixed: names and sizes match;
* arrays / maps: items / values resolve recursively;
* writer union: every branch must be readable; reader union (writer not a
  union): at least one branch must read the writer's type;
* logical types are ignored: only the underlying type is compared.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .avro_model import Array, AvroType, Enum, Fixed, Map, Record, UnionType, short_name
from .canonical import canonical_json

_PROMOTIONS: dict[str, frozenset[str]] = {
    # reader kind -> writer kinds it can read besides itself
    "long": frozenset({"int"}),
    "float": frozenset({"int", "long"}),
    "double": frozenset({"int", "long", "float"}),
    "bytes": frozenset({"string"}),
    "string": frozenset({"bytes"}),
}


class Level(enum.StrEnum):
    """Confluent compatibility levels."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: object) -> Level | None:
        """Return the level named by ``value`` (case-insensitive), or ``None``."""
        if not isinstance(value, str):
            return None
        try:
            return cls(value.strip().upper())
        except ValueError:
            return None

    @property
    def transitive(self) -> bool:
        """Whether every earlier version is checked, not just the latest."""
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """Whether the new schema must read data written with earlier ones."""
        return self in (Level.BACKWARD, Level.BACKWARD_TRANSITIVE, Level.FULL, Level.FULL_TRANSITIVE)

    @property
    def forward(self) -> bool:
        """Whether earlier schemas must read data written with the new one."""
        return self in (Level.FORWARD, Level.FORWARD_TRANSITIVE, Level.FULL, Level.FULL_TRANSITIVE)


@dataclass(frozen=True)
class Incompatibility:
    """One reason why a reader cannot read a writer's data.

    Attributes
    ----------
    error_type : str
        Avro/Confluent category, e.g. ``READER_FIELD_MISSING_DEFAULT_VALUE``.
    path : str
        JSON-pointer-like location in the reader schema.
    description : str
        Human-readable explanation.
    additional_info : str
        The offending name, symbol set or type pair.
    """

    error_type: str
    path: str
    description: str
    additional_info: str

    def __str__(self) -> str:
        return (
            f"{{errorType:'{self.error_type}', description:'{self.description}', "
            f"additionalInfo:'{self.additional_info}'}}"
        )


def can_read(
    reader: AvroType, writer: AvroType, reader_role: str = "reader", writer_role: str = "writer"
) -> list[Incompatibility]:
    """List why data written with ``writer`` cannot be read with ``reader``.

    Parameters
    ----------
    reader, writer : AvroType
        Parsed schemas.
    reader_role, writer_role : str
        Words used for each side in descriptions (e.g. ``"new"`` / ``"old"``).

    Returns
    -------
    list of Incompatibility
        Empty when the reader can read everything the writer can write.
    """
    return _Checker(reader_role, writer_role).check(reader, writer, "")


def check_compatibility(level: Level, candidate: AvroType, previous: Sequence[tuple[int, AvroType]]) -> list[str]:
    """Check a candidate schema against a subject's history under a level.

    Parameters
    ----------
    level : Level
        The compatibility level in force.
    candidate : AvroType
        The schema about to be registered (or tested).
    previous : sequence of (version, AvroType)
        Live (non-deleted) versions, oldest first.

    Returns
    -------
    list of str
        Confluent-style messages; empty means compatible.
    """
    if level is Level.NONE or not previous:
        return []
    targets = previous if level.transitive else previous[-1:]
    messages: list[str] = []
    # Newest first, like Confluent, so the most relevant failure is reported first.
    for version, old in reversed(targets):
        problems: list[Incompatibility] = []
        if level.backward:
            problems += can_read(candidate, old, "new", "old")
        if level.forward:
            problems += can_read(old, candidate, "old", "new")
        if problems:
            messages += [str(p) for p in problems]
            messages.append(f"{{oldSchemaVersion: {version}}}")
            messages.append(f"{{oldSchema: '{canonical_json(old)}'}}")
    if messages:
        messages.append(f"{{compatibility: '{level.value}'}}")
    return messages


class _Checker:
    """Stateful walk over a (reader, writer) pair of possibly recursive graphs."""

    def __init__(self, reader_role: str, writer_role: str) -> None:
        self._r = reader_role
        self._w = writer_role
        self._seen: dict[tuple[int, int], list[Incompatibility]] = {}

    def check(self, reader: AvroType, writer: AvroType, path: str) -> list[Incompatibility]:
        key = (id(reader), id(writer))
        if key in self._seen:
            # Re-entering a pair that is still being checked means a recursive
            # type; assuming success is the coinductive reading of the rules.
            return self._seen[key]
        self._seen[key] = []
        result = self._compute(reader, writer, path)
        self._seen[key] = result
        return result

    def _compute(self, reader: AvroType, writer: AvroType, path: str) -> list[Incompatibility]:
        if isinstance(writer, UnionType):
            return self._writer_union(reader, writer, path)
        if isinstance(reader, UnionType):
            return self._reader_union(reader, writer, path)
        if reader.kind != writer.kind:
            if writer.kind in _PROMOTIONS.get(reader.kind, frozenset()):
                return []
            return [self._type_mismatch(reader, writer, path)]
        if isinstance(reader, Record) and isinstance(writer, Record):
            return self._names(reader, writer, path) + self._fields(reader, writer, path)
        if isinstance(reader, Enum) and isinstance(writer, Enum):
            return self._names(reader, writer, path) + self._symbols(reader, writer, path)
        if isinstance(reader, Fixed) and isinstance(writer, Fixed):
            problems = self._names(reader, writer, path)
            if reader.size != writer.size:
                problems.append(
                    Incompatibility(
                        "FIXED_SIZE_MISMATCH",
                        path or "/",
                        f"The size of FIXED type at path '{path or '/'}' in the {self._r} schema "
                        f"({reader.size}) does not match the {self._w} schema ({writer.size})",
                        f"expected: {writer.size}, found: {reader.size}",
                    )
                )
            return problems
        if isinstance(reader, Array) and isinstance(writer, Array):
            return self.check(reader.items, writer.items, f"{path}/items")
        if isinstance(reader, Map) and isinstance(writer, Map):
            return self.check(reader.values, writer.values, f"{path}/values")
        return []

    def _writer_union(self, reader: AvroType, writer: UnionType, path: str) -> list[Incompatibility]:
        problems: list[Incompatibility] = []
        for index, branch in enumerate(writer.branches):
            if self.check(reader, branch, path):
                problems.append(
                    Incompatibility(
                        "MISSING_UNION_BRANCH",
                        f"{path}/{index}",
                        f"The {self._r} schema is missing a type inside a union field at path "
                        f"'{path}/{index}' in the {self._w} schema",
                        f"{self._r} union lacking {self._w} type: {_describe(branch)}",
                    )
                )
        return problems

    def _reader_union(self, reader: UnionType, writer: AvroType, path: str) -> list[Incompatibility]:
        if any(not self.check(branch, writer, path) for branch in reader.branches):
            return []
        return [
            Incompatibility(
                "MISSING_UNION_BRANCH",
                path or "/",
                f"The {self._r} schema union at path '{path or '/'}' has no branch that can read the "
                f"{self._w} type {_describe(writer)}",
                f"{self._r} union lacking {self._w} type: {_describe(writer)}",
            )
        ]

    def _type_mismatch(self, reader: AvroType, writer: AvroType, path: str) -> Incompatibility:
        return Incompatibility(
            "TYPE_MISMATCH",
            path or "/",
            f"The type (path '{path or '/'}') of a field in the {self._r} schema does not match "
            f"with the {self._w} schema",
            f"{self._r} type: {_describe(reader)} not compatible with {self._w} type: {_describe(writer)}",
        )

    def _names(self, reader: Record | Enum | Fixed, writer: Record | Enum | Fixed, path: str) -> list[Incompatibility]:
        if short_name(reader.fullname) == short_name(writer.fullname) or writer.fullname in reader.aliases:
            return []
        return [
            Incompatibility(
                "NAME_MISMATCH",
                f"{path}/name",
                f"The name of the schema has changed (path '{path}/name'): {self._w} "
                f"'{writer.fullname}' is not '{reader.fullname}' nor one of its aliases",
                f"expected: {writer.fullname}",
            )
        ]

    def _fields(self, reader: Record, writer: Record, path: str) -> list[Incompatibility]:
        by_name = {f.name: f for f in writer.fields}
        problems: list[Incompatibility] = []
        for index, field in enumerate(reader.fields):
            source = by_name.get(field.name)
            if source is None:
                source = next((by_name[a] for a in field.aliases if a in by_name), None)
            if source is None:
                if not field.has_default:
                    problems.append(
                        Incompatibility(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            f"{path}/fields/{index}",
                            f"The field '{field.name}' at path '{path}/fields/{index}' in the {self._r} "
                            f"schema has no default value and is missing in the {self._w} schema",
                            field.name,
                        )
                    )
                continue
            problems += self.check(field.type, source.type, f"{path}/fields/{index}/type")
        return problems

    def _symbols(self, reader: Enum, writer: Enum, path: str) -> list[Incompatibility]:
        missing = sorted(set(writer.symbols) - set(reader.symbols))
        if not missing or reader.default is not None:
            return []
        return [
            Incompatibility(
                "MISSING_ENUM_SYMBOLS",
                f"{path}/symbols",
                f"The {self._r} schema is missing enum symbols '{missing}' at path '{path}/symbols' "
                f"in the {self._w} schema",
                f"[{', '.join(missing)}]",
            )
        ]


def _describe(schema: AvroType) -> str:
    if isinstance(schema, Record | Enum | Fixed):
        return f"{schema.kind.upper()} {schema.fullname}"
    return schema.kind.upper()
