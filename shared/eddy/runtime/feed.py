"""Follows low-rate control topics whole (eddy.model-events, S.profiles, S.dlq, S.models) beside a service's loop.

They are read from the beginning without a consumer group (a restarted service
needs the whole history again, and the embedded broker's "latest" offset cannot
be trusted) by a background thread that only queues what it reads. The
service's loop drains the queue between batches, so every state change still
happens on one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid

from confluent_kafka import Consumer

from eddy.core.settings import Settings
from eddy.kafka.client import assign_from, consumer_config
from eddy.runtime.dlq import read_dlq_headers

log = logging.getLogger(__name__)


class SideFeed:
    """Queues ``(topic, value, reason)`` for every record of ``topics``; ``reason`` is a DLQ record's reason."""

    def __init__(self, settings: Settings, topics: list[str], name: str = "side-feed") -> None:
        group = f"eddy-{name}-{uuid.uuid4().hex[:8]}"  # required by the client, never joined
        self._consumer = Consumer(consumer_config(settings, group, background=True))
        self._topics = topics
        self.records: queue.Queue[tuple[str, bytes, str | None]] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        assign_from(self._consumer, self._topics)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def drain(self, limit: int = 10_000) -> list[tuple[str, bytes, str | None]]:
        out: list[tuple[str, bytes, str | None]] = []
        while len(out) < limit:
            try:
                out.append(self.records.get_nowait())
            except queue.Empty:
                break
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error():
                    continue
                topic = msg.topic() or ""
                reason = read_dlq_headers(msg.headers()).get("reason") if topic.endswith(".dlq") else None
                while not self._stop.is_set():
                    try:
                        self.records.put((topic, msg.value() or b"", reason), timeout=0.5)
                        break
                    except queue.Full:
                        continue  # the loop is behind: wait rather than drop
