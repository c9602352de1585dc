"""Pure request handling: parsed records in, accepted records and per-record errors out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.records import BodyError, RecordError, parse_body, to_event, to_feedback
from eddy.contracts.stream import StreamContract

__all__ = ["BodyError", "Converted", "convert", "parse_body"]


@dataclass
class Converted:
    accepted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def convert(
    records: list[Any], contract: StreamContract, kind: str, received_ms: int, pii_key: bytes = b""
) -> Converted:
    """Each record as an event (``kind="events"``) or a label (``kind="feedback"``), or its error."""
    out = Converted()
    for index, record in enumerate(records):
        try:
            if kind == "events":
                value = to_event(record, contract, received_ms, pii_key)
            else:
                value = to_feedback(record, contract.task, received_ms, contract.label_field)
        except RecordError as exc:
            out.rejected.append((index, str(exc)))
            continue
        out.accepted.append((index, value))
    return out
