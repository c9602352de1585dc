"""Follows S.models and eddy.model-events, and hot-swaps the serving set of each stream without pausing prediction.

Snapshots bring model versions (from learning, as they learn, and from the
model registry, when a version is registered); model events bring the alias
table (which version is champion, challenger or shadow). Both are read by one
thread, so a promotion and the snapshot it needs are applied in order; a
version is only switched in once its model has arrived.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.contracts.stream import StreamContract
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.kafka.client import assign_from, consumer_config, producer_config
from eddy.ml.artifacts import Signer
from eddy.ml.models import SnapshotError, check_snapshot
from eddy.ml.roles import CHALLENGER, CHAMPION, SHADOW
from eddy.runtime.dlq import DeadLetterWriter, dead_letter_of
from eddy.runtime.observability import Health
from eddy.services.inference import metrics
from eddy.services.inference.handlers import ServingModel, ServingSet, StreamModels
from eddy.services.inference.serving import ServingTable

log = logging.getLogger(__name__)


class SnapshotWatcher:
    """Reads every stream's S.models and eddy.model-events from the beginning and keeps ``models`` current.

    It reads without a consumer group: every inference replica must see every
    snapshot and alias change, and starting from the beginning needs no
    trustworthy "latest" offset.
    """

    def __init__(
        self,
        settings: Settings,
        contracts: dict[str, StreamContract],
        serdes: SerdeRegistry,
        models: StreamModels,
        signer: Signer,
        health: Health | None = None,
    ) -> None:
        self.contracts = contracts
        self.serdes = serdes
        self.models = models
        self.health = health or Health("inference")
        self.signer = signer
        self.table = ServingTable(contracts, models, signer)
        # A refused snapshot is kept in the stream's DLQ, byte for byte, with the reason.
        self.dead_letters = DeadLetterWriter(producer_config(settings))
        self.report()
        self.caught_up = threading.Event()
        # A group id is required by the client but never used: offsets are assigned, not committed.
        group = f"eddy-inference-snapshots-{uuid.uuid4().hex[:8]}"
        # Caught up means every partition read to its end once: partition EOF says so on any broker.
        self._consumer = Consumer(consumer_config(settings, group, background=True, **{"enable.partition.eof": True}))
        self._unread: set[tuple[str, int]] = set()
        # Under read_committed a partition ends at its last stable offset, below the high watermark while a
        # transaction is open: there the end-of-partition event is the end.
        self._committed_reads = settings.isolation_level == "read_committed"
        self._topics = [StreamTopics(s).models for s in contracts] + [MODEL_EVENTS_TOPIC]
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._stop = threading.Event()

    def start(self, wait_s: float = 15.0) -> None:
        """Start following; return once existing snapshots are loaded (or ``wait_s`` passed)."""
        assign_from(self._consumer, self._topics)
        self._unread = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        self._thread.start()
        if not self.caught_up.wait(wait_s):
            log.warning("snapshot catch-up still running; serving the models loaded so far")

    def report(self) -> None:
        """Show the serving models in /healthz: replicas serving the same lineage report the same."""
        serving = {
            f"{stream}/{model.name}": {"version": model.version, "learned": model.learned, "alias": alias}
            # A version in shards: each shard's learned count too (its "learned" is the slowest shard's).
            | ({"shards": [shard.learned for shard in model.shards]} if model.shards else {})
            for stream, current in self.models.items()
            for model, alias in _aliased(current)
        }
        self.health.set(serving=serving)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(100, 0.1)
            newest: Newest = {}
            changed: set[str] = set()
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF and self._at_end(msg):
                        self._unread.discard((msg.topic() or "", msg.partition() or 0))
                    continue
                try:
                    record = self.serdes.for_topic(msg.topic() or "").decode(msg.value())
                except SerdeError:
                    log.exception("undecodable snapshot or model event skipped")
                    continue
                if msg.topic() == MODEL_EVENTS_TOPIC:
                    if self.table.apply_event(record):
                        changed.add(record["stream"])
                else:
                    try:  # every snapshot is checked: a forged one must neither load nor hide a genuine one
                        check_snapshot(record, self.signer)
                    except SnapshotError as exc:
                        self._refuse(msg, exc)
                        continue
                    keep_newest(newest, record, msg)
            for record, msg in newest.values():
                try:
                    if self.table.load(record):
                        changed.add(record["stream"])
                except SnapshotError as exc:
                    self._refuse(msg, exc)
            if [stream for stream in changed if self.table.serve(stream)]:
                self.report()
            # Not "no message for a while", nor cached watermarks: with a partition's leader failing over,
            # fetches return nothing and watermarks are unknown, and a restarted inference that took that for
            # the end served an older snapshot than its predecessor had (found by the broker-fault chaos runs).
            if not self.caught_up.is_set() and not self._unread:
                self.caught_up.set()

    def _refuse(self, msg: Message, exc: SnapshotError) -> None:
        """A snapshot that is not served: said in the log, counted, and dead-lettered with the reason."""
        log.error("snapshot refused", extra={"topic": msg.topic(), "offset": msg.offset(), "reason": exc.reason,
                                             "error": str(exc)})  # fmt: skip
        metrics.SNAPSHOTS_REFUSED.labels(StreamTopics.stream_of(msg.topic() or ""), exc.reason).inc()
        self.dead_letters.write(dead_letter_of(msg, "inference.snapshots", exc.reason, exc))

    def _at_end(self, eof: Message) -> bool:
        """Whether an end-of-partition event is the partition's end: at or past the high watermark of the fetch.

        Tansu sometimes reports the end of a partition before its last records (measured for the history
        reader, ``eddy.history.reader``); a restarted inference that believed it served an older snapshot
        than its predecessor had, found by the chaos runs.
        """
        if self._committed_reads:
            return True
        tp = TopicPartition(eof.topic() or "", eof.partition() or 0)
        _, high = self._consumer.get_watermark_offsets(tp, cached=True)
        return high < 0 or (eof.offset() or 0) >= high


Newest = dict[tuple[str, str, int, int | None], tuple[dict[str, Any], Any]]


def keep_newest(newest: Newest, record: dict[str, Any], msg: Any) -> None:
    """Hold ``record`` if it is the newest snapshot of its version (and shard) in the batch: the one that learned most.

    Not the last one read: a batch spans partitions, and the registry's snapshot of a version (learned
    nothing) can follow the learner's on another partition. Taking the last one, a restarted inference served
    the version as registered for the rest of a chaos run.

    >>> newest: Newest = {}
    >>> for learned in (0, 1487, 0):
    ...     keep_newest(newest, {"stream": "s", "model_name": "m", "model_version": 1, "learned_count": learned}, None)
    >>> [record["learned_count"] for record, _ in newest.values()]
    [1487]
    """
    key = (record["stream"], record["model_name"], record["model_version"], record.get("shard"))
    held = newest.get(key)
    if held is None or record["learned_count"] >= held[0]["learned_count"]:
        newest[key] = (record, msg)


def _aliased(serving: ServingSet) -> list[tuple[ServingModel, str]]:
    extra = [(serving.challenger, CHALLENGER)] if serving.challenger is not None else []
    return [(serving.champion, CHAMPION), *extra, *((m, SHADOW) for m in serving.shadows)]
