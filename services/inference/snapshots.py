"""Follows S.models and hot-swaps newer snapshots into the serving map, without pausing prediction."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import Consumer

from services.inference import metrics
from services.inference.handlers import ServingModel, StreamModels
from shared.contracts import StreamContract
from shared.kafka import assign_from, consumer_config
from shared.models import SnapshotError, load_snapshot_estimator
from shared.observability import Health
from shared.serde import SerdeError, SerdeRegistry
from shared.settings import Settings
from shared.topics import StreamTopics

log = logging.getLogger(__name__)


class SnapshotWatcher:
    """Reads every stream's S.models from the beginning and keeps ``models`` on the newest snapshot.

    It reads without a consumer group: every inference replica must see every
    snapshot, and starting from the beginning needs no trustworthy "latest" offset.
    """

    def __init__(
        self,
        settings: Settings,
        contracts: dict[str, StreamContract],
        serdes: SerdeRegistry,
        models: StreamModels,
        health: Health | None = None,
    ) -> None:
        self.contracts = contracts
        self.serdes = serdes
        self.models = models
        self.health = health or Health("inference")
        self.report()
        self.caught_up = threading.Event()
        # A group id is required by the client but never used: offsets are assigned, not committed.
        group = f"eddy-inference-snapshots-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(consumer_config(settings, group, background=True))
        self._topics = [StreamTopics(s).models for s in contracts]
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._stop = threading.Event()

    def start(self, wait_s: float = 15.0) -> None:
        """Start following; return once existing snapshots are loaded (or ``wait_s`` passed)."""
        assign_from(self._consumer, self._topics)
        self._thread.start()
        if not self.caught_up.wait(wait_s):
            log.warning("snapshot catch-up still running; serving the models loaded so far")

    def report(self) -> None:
        """Show the serving models in /healthz: replicas serving the same lineage report the same."""
        serving = {
            f"{stream}/{name}": {"version": model.version, "learned": model.learned}
            for stream, models in self.models.items()
            for name, model in models.items()
        }
        self.health.set(serving=serving)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def _run(self) -> None:
        quiet_since = time.monotonic()
        while not self._stop.is_set():
            messages = self._consumer.consume(100, 0.1)
            newest: dict[str, dict] = {}
            for msg in messages:
                if msg.error():
                    continue
                try:
                    record = self.serdes.for_topic(msg.topic() or "").decode(msg.value())
                except SerdeError:
                    log.exception("undecodable snapshot skipped")
                    continue
                newest[f"{record['stream']}/{record['model_name']}"] = record  # only the last of a batch matters
            for record in newest.values():
                self._apply(record)
            if messages:
                quiet_since = time.monotonic()
            elif not self.caught_up.is_set() and (self._at_end() or time.monotonic() - quiet_since > 1.0):
                self.caught_up.set()

    def _at_end(self) -> bool:
        for tp in self._consumer.position(self._consumer.assignment()):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high > 0 and tp.offset < high:
                return False
        return True

    def _apply(self, record: dict) -> None:
        stream, name = record["stream"], record["model_name"]
        contract = self.contracts.get(stream)
        spec = next((m for m in contract.models if m.name == name), None) if contract is not None else None
        if contract is None or spec is None:
            return  # a model this process does not run
        current = self.models[stream].get(name)
        if current is not None and not current.is_older_than(record["model_version"], record["learned_count"]):
            return
        try:
            estimator = load_snapshot_estimator(record)
        except SnapshotError:
            log.exception("snapshot rejected")
            return
        self.models[stream][name] = ServingModel(
            name, record["model_version"], record["learned_count"], estimator, spec.features, contract.task
        )
        self.report()
        metrics.SNAPSHOT_SWAPS.labels(stream, record["model_name"]).inc()
        metrics.SNAPSHOT_LEARNED.labels(stream, record["model_name"]).set(record["learned_count"])
        metrics.SNAPSHOT_AGE.labels(stream).set(max(0.0, time.time() - record["created_at_ms"] / 1000))
        log.debug("snapshot swapped in", extra={"stream": stream, "learned": record["learned_count"]})
