"""Where each stream's ``S.feedback`` ends: the labels produced so far, for the freshness lag (``freshness.py``).

The learner's snapshots say how far into ``S.feedback`` it has read (``source_offsets``); the ends
read here say how far the labels go. Between the two are the labels produced and not yet in a served
snapshot. One broker query per partition, at most once per ``interval_s``, on monitoring's loop thread.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from eddy.core.settings import Settings
from eddy.kafka.client import consumer_config

log = logging.getLogger(__name__)


class FeedbackEnds:
    """Reads the end offset (high watermark) of every partition of ``topics``, keyed ``"topic:partition"``."""

    def __init__(self, settings: Settings, topics: list[str], interval_s: float, timeout_s: float = 2.0) -> None:
        # Never subscribes nor assigns: it only asks for watermarks. The group id (which the client requires, and
        # never joins) is under the side feed's prefix, the one monitoring's principal may use (eddy.kafka.acls).
        self.consumer = Consumer(consumer_config(settings, "eddy-monitoring-control-freshness", background=True))
        self.topics = topics
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._read_at = 0.0
        self._partitions: dict[str, list[int]] = {}

    def due(self) -> dict[str, dict[str, int]]:
        """Per topic, its partitions' end offsets, when ``interval_s`` has passed since the last read; else {}."""
        now = time.monotonic()
        if now - self._read_at < self.interval_s:
            return {}
        self._read_at = now
        ends: dict[str, dict[str, int]] = {}
        for topic in self.topics:
            try:
                ends[topic] = {f"{topic}:{p}": self._end(topic, p) for p in self._partitions_of(topic)}
            except KafkaException as exc:
                # Freshness waits for the next read; every other part of monitoring carries on.
                log.warning("could not read the end of a feedback topic", extra={"topic": topic, "error": str(exc)})
        return ends

    def _partitions_of(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            metadata = self.consumer.list_topics(topic, timeout=self.timeout_s).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            self._partitions[topic] = sorted(metadata.partitions)
        return self._partitions[topic]

    def _end(self, topic: str, partition: int) -> int:
        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout_s)
        return int(high)

    def close(self) -> None:
        self.consumer.close()
