"""Validation's fast lane: valid events are forwarded without being decoded.

Most events are valid. For those, decoding the Avro body into a dict only to
forward the same bytes costs more than everything else validation does (see
docs/benchmarks.md). The fast lane compiles each stream's schema and contract
into a flat field program that a small C extension (``shared/eddy/native/avro_checker.c``) runs over
the raw bytes of a whole batch. It answers, per record, "certainly valid" (with
the event id as the key and the event time) or "not sure"; the records it is
not sure about take the ordinary path, decode and ``check_record``, which alone
decides what is invalid and why. So the rules and their messages still live in
one place, and a record the native code cannot read (an older writer schema, a
nested field, a number too large to compare exactly) is merely slower.

The lane stands aside, and every record takes the ordinary path, when the C
extension was not built (no compiler at install time), for streams whose
schema it cannot walk (nested records, arrays, maps, logical types, unions
other than ``[null, T]``), and until a stream's reference profile is complete.

Examples
--------
>>> from eddy.contracts.stream import load_contract
>>> from eddy.core.settings import REPO_ROOT
>>> demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
>>> [op[:4] for op in compile_program(demo)[:3]]  # (name, kind, null branch, role)
[('event_id', 6, -1, 1), ('event_time_ms', 3, -1, 2), ('x0', 5, 0, 3)]
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence
from typing import Any

from eddy.avro.native import FEATURE, ID, KINDS, NATIVE, OTHER, TIME, Op, Unsupported, checker, field_type
from eddy.contracts.stream import FeatureSpec, StreamContract
from eddy.core.topics import StreamTopics
from eddy.runtime.loop import Forward, Routed
from eddy.services.validation.handlers import ValidateBatch

log = logging.getLogger(__name__)


def compile_program(contract: StreamContract) -> list[Op]:
    """The field program of ``contract``'s event schema, one op per field in schema order.

    Raises
    ------
    Unsupported
        With the reason, for a schema the native checker cannot walk.
    """
    schema = contract.event_schema
    named: dict[str, dict[str, Any]] = {}
    features = {f.name: f for f in contract.features}
    fields = schema.get("fields", [])
    names = {f["name"] for f in fields}
    for feature in contract.features:
        if feature.name not in names and feature.required:
            raise Unsupported(f"required feature {feature.name!r} is not in the schema")
    ops: list[Op] = []
    for field in fields:
        name = field["name"]
        null_index, kind, extra = field_type(field["type"], named, schema.get("namespace"))
        role = OTHER
        if name == contract.id_field:
            role = ID
        elif name == contract.time_field:
            role = TIME
        if name in features:
            if role != OTHER:
                raise Unsupported(f"{name!r} is both a feature and the {'id' if role == ID else 'time'} field")
            role = FEATURE
        if role == ID and kind != KINDS["string"]:
            raise Unsupported(f"id field {name!r} is not a string")
        if role == TIME and kind not in (KINDS["int"], KINDS["long"]):
            raise Unsupported(f"time field {name!r} is not an int or a long")
        spec: FeatureSpec | None = features.get(name)
        numeric = spec is not None and spec.type in ("double", "long")
        ops.append(
            (
                name,
                kind,
                null_index,
                role,
                numeric,
                spec is not None and spec.required,
                -math.inf if spec is None or spec.min is None else float(spec.min),
                math.inf if spec is None or spec.max is None else float(spec.max),
                frozenset(spec.allowed) if spec is not None and spec.allowed is not None else None,
                spec.regex.search if spec is not None and spec.regex is not None else None,
                extra if kind == KINDS["enum"] else None,
                extra if kind == KINDS["fixed"] else 0,
            )
        )
    return ops


class FastValidation:
    """The fast lane for ``ValidateBatch`` (``eddy.runtime.loop.FastLane``).

    ``schema_ids`` maps each stream's events topic to the id its current schema
    is registered under: only records written with it are vouched for.
    """

    def __init__(self, handler: ValidateBatch, schema_ids: dict[str, int]) -> None:
        self.handler = handler
        self.sample_every = max(1, handler.config.profile_every)
        self.checkers: dict[str, Any] = {}
        for stream, contract in handler.contracts.items():
            events = StreamTopics(stream).events
            if not NATIVE or events not in schema_ids:
                continue
            try:
                ops = compile_program(contract)
            except Unsupported as exc:
                log.info("fast lane off for stream", extra={"stream": stream, "reason": str(exc)})
                continue
            header = struct.pack(">bI", 0, schema_ids[events])
            self.checkers[events] = checker(header, ops)

    @property
    def streams(self) -> list[str]:
        """The streams the lane vouches for."""
        return sorted(StreamTopics.stream_of(t) for t in self.checkers)

    def route(self, topic: str, values: Sequence[bytes | None]) -> Routed:
        stream = StreamTopics.stream_of(topic)
        checker = self.checkers.get(topic)
        if checker is None or self.handler.profiles[stream].taking_reference:
            # The reference profile takes the first N valid records exactly: let the handler see each one.
            return "", [None] * len(values)
        verdicts: list[Forward | None] = checker.check(values)
        return StreamTopics(stream).validated, verdicts

    def observe(self, topic: str, sample: Sequence[tuple[bytes, int, int]]) -> None:
        decoded = self.checkers[topic].decode([value for value, _, _ in sample])
        tracker = self.handler.profiles[StreamTopics.stream_of(topic)]
        tracker.observe_many(
            [value for value in decoded if value is not None],
            [(p, o) for (_, p, o), value in zip(sample, decoded, strict=True) if value is not None],
            topic,
        )
