"""Dead letters: bad input is kept, byte for byte, with the reason in headers.

A dead letter goes to the DLQ topic of the stream the input came from
(``S.dlq``). The value and key are the original bytes, so a record can be fixed
and replayed exactly; headers carry where it came from and why it was rejected.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

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
