"""Dead letters: bad input is kept, byte for byte, with the reason in headers.

A dead letter goes to the DLQ topic of the stream the input came from
(``S.dlq``). The value and key are the original bytes, so a record can be fixed
and replayed exactly; headers carry where it came from and why it was rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message, Producer

from eddy.contracts.checks import Violation
from eddy.core.topics import StreamTopics
from eddy.kafka.producer import Headers

HEADER_PREFIX = "eddy.dlq."

# Records a consumer never read because retention deleted them first: the dead letter stands for the lost offset
# range (``gap.*`` headers) and has no value, so there is nothing to replay.
RETENTION_GAP = "retention_gap"
# A label whose prediction was deleted by retention before the learner read it.
PREDICTION_DELETED = "prediction_deleted"
NOT_REPLAYABLE = frozenset({RETENTION_GAP})

log = logging.getLogger(__name__)


# Below Kafka's default 1 MB record limit, with room for keys and headers.
MAX_RECORD_BYTES = 900_000
TRUNCATED_KEEP_BYTES = 64 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be handled, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None
    stage: str
    reason: str
    error_class: str
    message: str
    violations: tuple[Violation, ...] = field(default=())
    # More eddy.dlq.* headers, e.g. the lost offset range of a retention gap.
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def dlq_topic(self) -> str:
        return StreamTopics(StreamTopics.stream_of(self.topic)).dlq

    def dlq_headers(self, now_ms: int | None = None) -> Headers:
        meta = {
            "reason": self.reason,
            "stage": self.stage,
            "error.class": self.error_class,
            "error.message": self.message[:2000],
            "source.topic": self.topic,
            "source.partition": str(self.partition),
            "source.offset": str(self.offset),
            "time": str(now_ms if now_ms is not None else int(time.time() * 1000)),
        }
        if self.violations:
            meta["violations"] = json.dumps([v.as_dict() for v in self.violations])
        meta.update(self.extra)
        own = [(HEADER_PREFIX + k, v.encode("utf-8")) for k, v in meta.items()]
        # The original headers are kept after ours so a replay can restore them.
        return own + [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]


def record_bytes(value: bytes | None, key: bytes | None, headers: Headers | None) -> int:
    """What a record weighs against the record limit: its value, key and headers.

    >>> record_bytes(b"abc", b"k", None), record_bytes(b"abc", None, [("h", b"xy")])
    (4, 6)
    """
    size = len(value or b"") + len(key or b"")
    # Most records have no headers: the stream loop weighs every output, so the sum is not even started for them.
    return size + sum(len(name) + len(content or b"") for name, content in headers) if headers else size


def fit_dead_letter(letter: DeadLetter) -> tuple[bytes | None, bytes | None, Headers]:
    """The value, key and headers of ``letter``'s DLQ record, cut down where they would not fit the record limit.

    Kafka would refuse a larger record and the batch could never commit. The value, then the key, are
    cut to a prefix, with their size and hash in headers; the input's own headers go, if it comes to that.
    """
    value, key, headers = letter.value, letter.key, letter.dlq_headers()
    if value is not None and len(value) > TRUNCATED_KEEP_BYTES and record_bytes(value, key, headers) > MAX_RECORD_BYTES:
        headers += _truncated(value, "")
        value = value[:TRUNCATED_KEEP_BYTES]
    if key is not None and len(key) > TRUNCATED_KEEP_BYTES and record_bytes(value, key, headers) > MAX_RECORD_BYTES:
        headers += _truncated(key, "key_")
        key = key[:TRUNCATED_KEEP_BYTES]
    if record_bytes(value, key, headers) > MAX_RECORD_BYTES:
        headers = [h for h in headers if h[0].startswith(HEADER_PREFIX)] + [(HEADER_PREFIX + "headers_dropped", b"1")]
    return value, key, headers


def _truncated(data: bytes, prefix: str) -> Headers:
    return [
        (f"{HEADER_PREFIX}{prefix}truncated_from_bytes", str(len(data)).encode()),
        (f"{HEADER_PREFIX}{prefix}sha256", hashlib.sha256(data).hexdigest().encode()),
    ]


def dead_letter_of(message: Message, stage: str, reason: str, exc: BaseException) -> DeadLetter:
    """A dead letter for a record read outside a stream loop (a model snapshot a watcher refused, say)."""
    _, timestamp_ms = message.timestamp()
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),  # bytes: no deserializer is configured
        value=message.value(),
        headers=list(message.headers() or []),  # type: ignore[arg-type]
        timestamp_ms=timestamp_ms if timestamp_ms > 0 else None,
        stage=stage,
        reason=reason,
        error_class=type(exc).__name__,
        message=str(exc),
    )


class DeadLetterWriter:
    """Writes dead letters from a thread that has no stream loop, with a producer of its own made when needed.

    A snapshot watcher refuses so rarely (a forged or unsigned model) that each letter is flushed at once.
    """

    def __init__(self, producer_conf: dict[str, Any]) -> None:
        self.producer_conf = producer_conf
        self._producer: Producer | None = None

    def write(self, letter: DeadLetter, timeout_s: float = 10.0) -> bool:
        """Produce ``letter`` to its stream's DLQ; False (logged) if it was not acknowledged in ``timeout_s``."""
        if self._producer is None:
            self._producer = Producer(self.producer_conf)
        value, key, headers = fit_dead_letter(letter)
        self._producer.produce(letter.dlq_topic, value, key, headers=headers)  # type: ignore[arg-type]
        if self._producer.flush(timeout_s) > 0:
            log.error("dead letter not acknowledged", extra={"topic": letter.dlq_topic, "reason": letter.reason})
            return False
        return True


def read_dlq_headers(headers: Any) -> dict[str, str]:
    """The eddy.dlq.* headers of a DLQ record (as the client returns them) as a plain dict, prefix removed."""
    out = {}
    for k, v in headers or []:
        if k.startswith(HEADER_PREFIX):
            text = v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v or "")
            out[k[len(HEADER_PREFIX) :]] = text
    return out


# A violation repeats the offending value in a header: a prefix is enough to say what was wrong, and the whole
# of a huge one would make the dead letter too large for Kafka (the record itself is kept in the value).
