"""Turning user records (JSON, CSV rows) into Avro-ready events and labels.

The HTTP gateway, ``eddy produce`` / ``eddy feedback`` and the demo feed all
go through these functions, so a record is accepted or rejected the same way
whichever door it came through.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import uuid
from datetime import datetime
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.limits import MAX_FUTURE_MS

INGESTED_AT_HEADER = "eddy.ingested_at_ms"


class RecordError(ValueError):
    """A record that cannot become an event of its stream; the message says why."""


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_pii(value: str, key: bytes) -> str:
    """A keyed SHA-256 (HMAC) of a PII value: joinable across events, not reversible without the key.

    >>> hash_pii("4111-1111", b"k")[:16]
    '5f46cefdb6c32729'
    """
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def to_event(
    record: Any, contract: StreamContract, received_ms: int | None = None, pii_key: bytes = b""
) -> dict[str, Any]:
    """An event of ``contract``'s schema from a user record.

    A missing event id gets a UUID and a missing event time gets the time of
    receipt; event times may be epoch milliseconds or ISO-8601 strings. PII
    fields named by the contract are dropped, or replaced by ``hash_pii``.

    Examples
    --------
    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    >>> e = to_event({"event_id": "a", "event_time_ms": "2026-01-01T00:00:00Z", "x0": 1, "x1": 2.5, "x2": 3}, demo)
    >>> e["event_time_ms"], e["x0"], e["region"]
    (1767225600000, 1.0, None)
    >>> to_event({"x0": 1, "colour": "red"}, demo)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eddy.contracts.records.RecordError: unknown field 'colour' (stream demo has: event_id, ...)
    """
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
    fields = {f["name"]: f for f in contract.event_schema["fields"]}
    dropped = contract.pii.drop
    unknown = [k for k in record if k not in fields and k not in dropped]
    if unknown:
        raise RecordError(f"unknown field {unknown[0]!r} (stream {contract.name} has: {', '.join(fields)})")
    event: dict[str, Any] = {}
    for name, spec in fields.items():
        value = _clean(record.get(name))
        if name == contract.id_field:
            value = str(value) if value not in (None, "") else str(uuid.uuid4())
        elif name == contract.time_field:
            received = received_ms or now_ms()
            value = kafka_time(parse_time_ms(value), received, "event time") if value is not None else received
        elif value is None and "default" in spec:
            value = spec["default"]
        else:
            value = _coerce(name, value, spec["type"])
        if name in contract.pii.hash and value is not None:
            value = hash_pii(str(value), pii_key)
        event[name] = value
    return event


def to_feedback(record: Any, task: str, received_ms: int | None = None, label_field: str = "label") -> dict[str, Any]:
    """A ``Feedback`` record from a user record ``{"event_id": ..., "<label_field>": ...}``."""
    if not isinstance(record, dict):
        raise RecordError(f"a label must be a JSON object, got {type(record).__name__}")
    known = ("event_id", label_field, "label_time_ms", "source")
    unknown = [k for k in record if k not in known]
    if unknown:
        raise RecordError(f"unknown field {unknown[0]!r} (labels have: {', '.join(known)})")
    event_id = record.get("event_id")
    if event_id in (None, ""):
        raise RecordError("event_id is required: a label must say which event it belongs to")
    label = _clean(record.get(label_field))
    if label is None:
        raise RecordError(f"{label_field} is required")
    if task == "regression" and isinstance(label, int | float) and not isinstance(label, bool):
        try:
            label = float(label)
        except OverflowError as exc:
            raise RecordError(f"{label_field} is too large for a double") from exc
    when = record.get("label_time_ms")
    source = record.get("source")
    return {
        "event_id": str(event_id),
        "label": label,
        "label_time_ms": (
            kafka_time(parse_time_ms(when), received_ms or now_ms(), "label time")
            if when is not None
            else (received_ms or now_ms())
        ),
        "source": None if source is None else str(source),
    }


def ahead(time_ms: int, now_ms: int) -> str:
    """How far ``time_ms`` is ahead of ``now_ms``, in words.

    >>> ahead(7_200_000 + 90_000, 0), ahead(5_000, 0)
    ('2.0 h', '5 s')
    """
    seconds = (time_ms - now_ms) / 1000
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def kafka_time(time_ms: int, received_ms: int, what: str) -> int:
    """``time_ms``, if Kafka accepts it as a record's timestamp: not before 1970, nor over MAX_FUTURE_MS ahead.

    Kafka refuses a negative CreateTime, and one more than ``log.message.timestamp.after.max.ms`` ahead of its
    clock, and with it every other record of the produce batch: so such a time is this record's error alone.

    >>> kafka_time(1_000, 0, "event time")
    1000
    >>> kafka_time(4 * 3_600_000, 0, "event time")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eddy.contracts.records.RecordError: event time 14400000 is 4.0 h ahead of the time of receipt; Kafka refuses ...
    >>> kafka_time(-5, 0, "label time")
    Traceback (most recent call last):
    ...
    eddy.contracts.records.RecordError: label time -5 is before 1970-01-01: Kafka refuses negative timestamps
    """
    if time_ms < 0:
        raise RecordError(f"{what} {time_ms} is before 1970-01-01: Kafka refuses negative timestamps")
    if time_ms > received_ms + MAX_FUTURE_MS:
        raise RecordError(
            f"{what} {time_ms} is {ahead(time_ms, received_ms)} ahead of the time of receipt; "
            f"Kafka refuses records over {MAX_FUTURE_MS // 60_000} min in the future"
        )
    return time_ms


def parse_time_ms(value: Any) -> int:
    """Epoch milliseconds from an int/float (milliseconds) or an ISO-8601 string."""
    if isinstance(value, bool):
        raise RecordError(f"time must be epoch milliseconds or ISO-8601, got {value!r}")
    if isinstance(value, int | float):
        # Only floats can be non-finite; isfinite() of an int of hundreds of digits overflows.
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordError(f"time must be finite, got {value!r}")
        return _epoch_ms(int(value))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            try:
                millis = int(text)
            except ValueError as exc:  # isdigit() admits digits int() refuses ("²"), and past 4300 digits
                raise RecordError(f"time {text[:40]!r} is not epoch milliseconds: {exc}") from exc
            return _epoch_ms(millis)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise RecordError(f"time {value!r} is neither epoch milliseconds nor ISO-8601") from exc
        if parsed.tzinfo is None:
            raise RecordError(f"time {value!r} has no timezone; add Z or an offset")
        return int(parsed.timestamp() * 1000)
    raise RecordError(f"time must be epoch milliseconds or ISO-8601, got {type(value).__name__}")


def _epoch_ms(millis: int) -> int:
    if not -(2**63) <= millis < 2**63:
        raise RecordError("time is out of range: epoch milliseconds must fit in 64 bits")
    return millis


def _clean(value: Any) -> Any:
    # pandas turns empty CSV cells into NaN: those mean "missing", not "not a number".
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return value.item()
    return value


def _coerce(name: str, value: Any, avro_type: Any) -> Any:
    types = avro_type if isinstance(avro_type, list) else [avro_type]
    if value is None:
        if "null" in types:
            return None
        raise RecordError(f"field {name!r} is required")
    if isinstance(value, bool):
        if "boolean" in types:
            return value
        raise RecordError(f"field {name!r}: expected {_expected(types)}, got a boolean")
    if isinstance(value, int | float):
        try:
            if "double" in types or "float" in types:
                return float(value)
            if ("long" in types or "int" in types) and float(value).is_integer():
                return int(value)
        except OverflowError as exc:  # a JSON integer of hundreds of digits
            raise RecordError(f"field {name!r}: the number is too large for {_expected(types)}") from exc
        raise RecordError(f"field {name!r}: expected {_expected(types)}, got {value!r}")
    if isinstance(value, str):
        if "string" in types:
            return value
        raise RecordError(f"field {name!r}: expected {_expected(types)}, got the string {value!r}")
    raise RecordError(f"field {name!r}: expected {_expected(types)}, got {type(value).__name__}")


def _expected(types: list[Any]) -> str:
    return " or ".join(str(t) for t in types if t != "null")


class BodyError(ValueError):
    """A request body that is not JSON, a JSON array, or JSON lines."""


def parse_body(body: bytes) -> list[Any]:
    """Records from a JSON array, a single JSON object, or JSON lines.

    >>> parse_body(b'[{"a": 1}, {"a": 2}]')
    [{'a': 1}, {'a': 2}]
    >>> parse_body(b'{"a": 1}\\n{"a": 2}\\n')
    [{'a': 1}, {'a': 2}]
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8: {exc}") from exc
    stripped = text.strip()
    if not stripped:
        raise BodyError("empty body: send a JSON array or JSON lines")
    try:
        doc = _loads(stripped, "the body")
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        pass
    records = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_loads(line, f"line {number}"))
        except json.JSONDecodeError as exc:
            raise BodyError(f"line {number} is not JSON: {exc.msg}") from exc
    return records


def _loads(text: str, what: str) -> Any:
    """``json.loads``; JSON that is well formed but hostile is a ``BodyError`` too, never a crash.

    Raises
    ------
    json.JSONDecodeError
        If ``text`` is not JSON.
    BodyError
        If it nests deeper than the parser's recursion limit, or holds an integer of more digits than
        Python converts (``sys.get_int_max_str_digits``).
    """
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise BodyError(f"{what} nests arrays or objects too deeply") from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise BodyError(f"{what} holds a number that cannot be read: {exc}") from exc
