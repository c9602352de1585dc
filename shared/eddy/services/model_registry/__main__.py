"""Run the model registry: ``python -m eddy.services.model_registry``.

On start it registers version 1 of every contract model that has none,
publishes what the outbox still holds, one ``synced`` event per stream (the
broker may have lost ``eddy.model-events``) and every active version's
artifact on ``S.models``. Then its loop registers candidates from
``eddy.model-candidates`` and applies requests from ``eddy.model-events``,
while a side feed follows ``S.models`` for the online lineage of each version.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from eddy.avro.serde import SerdeError
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, StreamTopics
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import BatchResult, InRecord
from eddy.runtime.service import bootstrap, code_version, retry
from eddy.services.model_registry import metrics
from eddy.services.model_registry.artifacts import ArtifactError, ArtifactStore
from eddy.services.model_registry.config import ACTOR, RegistryConfig
from eddy.services.model_registry.handlers import Lineage, Registry, RegistryHandler
from eddy.services.model_registry.http import RegistryApi
from eddy.services.model_registry.publisher import Publisher
from eddy.services.model_registry.store import Store

log = logging.getLogger(__name__)

# Dead letters of platform topics (a bad candidate) go to eddy.dlq: eddy.runtime.dlq names a DLQ after the
# topic's prefix. Created here so the broker does not auto-create it with its own partition count.
PLATFORM_DLQ = StreamTopics("eddy").dlq


def main() -> int:
    api = RegistryApi()
    ctx = bootstrap(ACTOR, http_api=api.http_api())
    config = RegistryConfig.from_settings(ctx.settings)
    store = Store(config.db_path)
    artifacts = ArtifactStore(config.artifacts_dir, ctx.keys)
    removed = artifacts.clean()
    registry = Registry(store, artifacts, ctx.contracts, code_version())
    retry(lambda: ensure_topics(ctx.settings, [PLATFORM_DLQ]), "create the platform DLQ", ctx.stop)
    publisher = Publisher(store, ConfirmedProducer(producer_config(ctx.settings)), ctx.serdes)

    registry.ensure_initial()
    for stream in ctx.contracts:
        registry.sync(stream)
    # Artifacts first, then the events naming them, so a follower that learns a version can load it.
    snapshots, corrupt = [], []
    for row in (row for stream in ctx.contracts for row in registry.active_rows(stream)):
        try:
            snapshots.append(registry.snapshot_record(row))
        except ArtifactError as exc:
            # One damaged file must not keep the registry (and every alias change) down: report it instead.
            log.error("artifact failed verification", extra={"version": f"{row.stream}/{row.key}", "error": str(exc)})
            corrupt.append(f"{row.stream}/{row.key}")
    retry(lambda: publisher.publish_snapshots(snapshots), "publish registered artifacts", ctx.stop)
    retry(publisher.flush_or_raise, "publish the model events outbox", ctx.stop)
    metrics.ARTIFACT_BYTES.set(artifacts.total_bytes())
    ctx.health.set(temp_files_removed=removed, snapshots_published=len(snapshots), corrupt_artifacts=corrupt)
    log.info("registry ready", extra={"db": str(config.db_path), "snapshots": len(snapshots)})
    api.attach(registry, lambda: publisher.flush(registry.take_revived()))

    lineage = Lineage(store, config.lineage_interval_s)
    feed = SideFeed(ctx.settings, ctx.topics("models"), "model-registry-lineage")
    feed.start()
    handler = RegistryHandler(registry)

    def follow() -> None:
        for topic, value, _ in feed.drain():
            try:
                lineage.observe(ctx.serdes.for_topic(topic).decode(value))
            except SerdeError:
                continue  # not ours to fix: learning's snapshots are checked by their readers
        lineage.flush()
        # Events decided by the previous batch go out once its snapshots were handed to the producer.
        publisher.flush()

    def handle(records: Sequence[InRecord]) -> BatchResult:
        follow()
        result = handler(records)
        if any(r.topic == MODEL_CANDIDATES_TOPIC for r in records):
            metrics.ARTIFACT_BYTES.set(artifacts.total_bytes())
        return result

    loop = ctx.stream_loop([MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC], handle, on_idle=follow)
    try:
        loop.run(ctx.stop)
    finally:
        feed.stop()
        lineage.flush(force=True)
        publisher.flush()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
