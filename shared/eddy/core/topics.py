"""Topic names: one place that knows how a stream maps onto Kafka topics."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

MODEL_EVENTS_TOPIC = "eddy.model-events"
# Challengers built by retraining, with their artifacts, for the model registry to register.
MODEL_CANDIDATES_TOPIC = "eddy.model-candidates"
# Dead letters of the platform topics (a candidate the registry cannot register), named like a stream's S.dlq.
PLATFORM_DLQ_TOPIC = "eddy.dlq"
PLATFORM_TOPICS = (MODEL_EVENTS_TOPIC, MODEL_CANDIDATES_TOPIC, PLATFORM_DLQ_TOPIC)


@dataclass(frozen=True)
class StreamTopics:
    """The topics of one stream.

    Examples
    --------
    >>> StreamTopics("demo").predictions
    'demo.predictions'
    >>> StreamTopics.stream_of("demo.feedback")
    'demo'
    """

    stream: str

    @property
    def events(self) -> str:
        return f"{self.stream}.events"

    @property
    def raw(self) -> str:
        """JSON records to be converted to Avro events by the ingestion bridge."""
        return f"{self.stream}.raw"

    @property
    def validated(self) -> str:
        return f"{self.stream}.validated"

    @property
    def dlq(self) -> str:
        return f"{self.stream}.dlq"

    @property
    def predictions(self) -> str:
        return f"{self.stream}.predictions"

    @property
    def feedback(self) -> str:
        return f"{self.stream}.feedback"

    @property
    def labeled(self) -> str:
        return f"{self.stream}.labeled"

    @property
    def alerts(self) -> str:
        return f"{self.stream}.alerts"

    @property
    def profiles(self) -> str:
        """Data profiles published by validation: the reference (first N records) and the running one."""
        return f"{self.stream}.profiles"

    @property
    def models(self) -> str:
        return f"{self.stream}.models"

    def all(self) -> list[str]:
        return [
            self.raw,
            self.events,
            self.validated,
            self.dlq,
            self.predictions,
            self.feedback,
            self.labeled,
            self.alerts,
            self.models,
            self.profiles,
        ]

    @staticmethod
    def stream_of(topic: str) -> str:
        """The stream a per-stream topic belongs to (everything before the last dot)."""
        return _stream_of(topic)


@cache
def _stream_of(topic: str) -> str:
    # Called for every record on the hot path, for a handful of distinct topics.
    stream, sep, _ = topic.rpartition(".")
    if not sep:
        raise ValueError(f"{topic!r} is not a stream topic (expected STREAM.KIND)")
    return stream
