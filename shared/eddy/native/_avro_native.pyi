"""Types of the _avro_native extension (avro_module.c and the files it names); see eddy.avro.native."""

from collections.abc import Callable, Sequence
from typing import Any, final

# One field of a Checker's program, built by eddy.avro.native and validation's fast lane:
# (name, kind, null_index, role, numeric, required, lo, hi, allowed, search, symbols, size).
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
# A value type of the Codec: a kind, or the kinds of a union's branches.
ValueType = int | tuple[int, ...]
# One field of a Codec's program: (name, is_map, null index of a [null, map] union or -1, value type).
Field = tuple[str, bool, int, ValueType]
# Per field of Codec.columns: None (skipped), a list (objects), or (float64/int64 data, null flags).
Column = list[Any] | tuple[bytearray, bytearray] | None

@final
class Checker:
    """A compiled field program that vouches for valid Avro records without decoding them."""

    def __init__(self, header: bytes, ops: list[Op], /) -> None: ...
    def check(self, values: Sequence[bytes | None], /) -> list[tuple[bytes, int] | None]:
        """Per value, (key, event_time_ms) if certainly valid, else None."""

    def decode(self, values: Sequence[bytes | None], /) -> list[dict[str, Any] | None]:
        """Per value, the decoded record if certainly valid, else None."""

@final
class Codec:
    """Writes flat records as Avro, byte for byte as fastavro does, and reads them back."""

    def __init__(self, header: bytes, fields: list[Field], /) -> None: ...
    def encode(self, record: object, /) -> bytes | None:
        """The record in the wire format, or None when fastavro should handle it."""

    def decode(self, values: Sequence[bytes | None], /) -> list[dict[str, Any] | None]:
        """Per value, the record, or None when fastavro should handle it."""

    def columns(self, values: Sequence[bytes | None], plan: Sequence[int], /) -> tuple[bytearray, list[Column]]:
        """Per value whether it was read, and per field the column the plan asks for (eddy.avro.columns)."""
