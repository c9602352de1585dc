"""Reference profiles published earlier, read back so a restarted validator keeps the same reference."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.validation.profile import REFERENCE
from shared.kafka import consumer_config
from shared.serde import SerdeError, SerdeRegistry
from shared.settings import Settings
from shared.topics import StreamTopics


def published_references(
    settings: Settings, serdes: SerdeRegistry, streams: list[str], quiet_s: float = 1.0, timeout_s: float = 30.0
) -> dict[str, dict[str, Any]]:
    """The last reference profile in each stream's S.profiles (read from the beginning: no "latest" needed)."""
    found: dict[str, dict[str, Any]] = {}
    topics = [StreamTopics(s).profiles for s in streams]
    consumer = Consumer(consumer_config(settings, f"eddy-validation-reference-{uuid.uuid4().hex[:8]}"))
    try:
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t in topics
                if t in metadata.topics
                for p in metadata.topics[t].partitions
            ]
        )
        last = started = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - started < timeout_s:
            messages = [m for m in consumer.consume(500, 0.1) if not m.error()]
            if messages:
                last = time.monotonic()
            for msg in messages:
                key = msg.key() or b""
                if not key.endswith(f":{REFERENCE}".encode()):
                    continue
                try:
                    record = serdes.for_topic(msg.topic() or "").decode(msg.value())
                except SerdeError:
                    continue
                found[record["stream"]] = record
    finally:
        consumer.close()
    return found
