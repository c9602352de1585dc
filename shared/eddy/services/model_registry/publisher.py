"""Sends the outbox to ``eddy.model-events`` and registered artifacts to ``S.models``.

A row is marked published only after the broker acknowledged it; a crash
in between re-sends it on the next start under the same event id, which
followers recognise. One lock keeps the events in outbox order even when the
loop thread and an HTTP request publish at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import KafkaException

from eddy.avro.serde import SerdeRegistry, encode_key
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.kafka.producer import ConfirmedProducer, DeliveryError
from eddy.kafka.retention import snapshot_key
from eddy.services.model_registry import metrics
from eddy.services.model_registry.store import Store

log = logging.getLogger(__name__)


class Publisher:
    """Publishes what the registry decided, through a producer of its own (the loop's is not thread-safe)."""

    def __init__(self, store: Store, producer: ConfirmedProducer, serdes: SerdeRegistry, timeout_s: float = 10.0):
        self.store = store
        self.producer = producer
        self.serdes = serdes
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def flush(self, snapshots: Sequence[dict[str, Any]] = ()) -> bool:
        """Publish ``snapshots``, then every unpublished outbox row; False (logged) when Kafka did not take them all.

        The snapshots go first so that a follower learning of a version from an event can load it.
        """
        try:
            if snapshots:
                self.publish_snapshots(snapshots)
            self.flush_or_raise()
        except (DeliveryError, KafkaException, BufferError) as exc:
            log.warning("outbox not published yet; will retry", extra={"error": str(exc)[:300]})
            return False
        return True

    def flush_or_raise(self) -> int:
        """Publish every unpublished outbox row; returns how many.

        Raises
        ------
        DeliveryError
            When the broker did not acknowledge them within ``timeout_s``.
        """
        sent = 0
        with self._lock:
            serde = self.serdes.for_topic(MODEL_EVENTS_TOPIC)
            while rows := self.store.unpublished():
                metrics.OUTBOX_PENDING.set(len(rows))
                for _, event in rows:
                    self.producer.produce(MODEL_EVENTS_TOPIC, serde.encode(event), encode_key(event["stream"]))
                self.producer.confirm(self.timeout_s)
                self.store.mark_published([seq for seq, _ in rows])
                sent += len(rows)
            metrics.OUTBOX_PENDING.set(0)
        return sent

    def publish_snapshots(self, records: Iterable[dict[str, Any]]) -> int:
        """Publish ``ModelSnapshot`` records on their stream's ``S.models`` (keyed by ``snapshot_key``) and confirm."""
        sent = 0
        with self._lock:
            for record in records:
                topic = StreamTopics(record["stream"]).models
                data = self.serdes.for_topic(topic).encode(record)
                key = snapshot_key(record["model_name"], record["model_version"], registered=True)
                self.producer.produce(topic, data, encode_key(key))
                sent += 1
            self.producer.confirm(self.timeout_s)
        return sent
