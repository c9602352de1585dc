"""Dead letters: bad input is kept, byte for byte, with the reason in headers.

A dead letter goes to the DLQ topic of the stream the input came from
(``S.dlq``). The value and key are the original bytes, so a record can be fixed
and replayed exactly; headers carry where it came from and why it was rejected.
"""

from __future__ import annotations

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
        self._producer.produce(letter.dlq_topic, letter.value, letter.key, headers=letter.dlq_headers())  # type: ignore[arg-type]
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
