"""Run the learning service: ``python -m eddy.services.learning`` (see runner.py for how it stays exact)."""

from __future__ import annotations

import sys
from typing import Any

from eddy.core.topics import MODEL_EVENTS_TOPIC
from eddy.kafka.client import admin_client
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import Handler, StreamLoop
from eddy.runtime.service import ServiceContext, bootstrap
from eddy.services.learning.config import LearningProcesses, learning_processes
from eddy.services.learning.runner import LearningService, check_partitions


def main() -> int:
    ctx = bootstrap("learning", background=True)
    processes = learning_processes()
    inputs = ctx.topics("predictions") + ctx.topics("feedback")
    # Before learning anything: a partition count that does not fit a model's shards splits its keys wrongly.
    check_partitions(ctx.contracts, partition_counts(ctx, inputs))
    feed = SideFeed(ctx.settings, [MODEL_EVENTS_TOPIC, *ctx.topics("models")], "learning-registry")
    feed.start()
    service = LearningService(ctx, feed, processes)
    loop: StreamLoop
    loop = stream_loop(
        ctx,
        processes,
        inputs,
        service.handle,
        on_assign=service.on_assign,
        on_batch_done=lambda offsets: service.on_batch_done(offsets, loop),
        on_idle=lambda: service.on_idle(loop),
        on_gap=service.on_gap,
        # Two batches in flight: the next is read and learned while the broker acknowledges the last. Checkpoints
        # wait for a point where none is (LearningService._when_due).
        max_in_flight=2,
    )
    loop.batch_size = service.limits.batch_size
    # Publish at start too: a crash between checkpoint and publish, or a new broker, leaves inference behind.
    service.publish(force=True)
    try:
        loop.run(ctx.stop)
    finally:
        feed.stop()
        # A batch still unacknowledged after the loop's last flush was learned but will be read again: a
        # checkpoint now would learn it twice. The last checkpoint stands instead.
        if not loop.batches_in_flight:
            service.checkpoint()
        service.publish()
    return 0


def partition_counts(ctx: ServiceContext, topics: list[str]) -> dict[str, int]:
    """Partitions of each of ``topics`` that exists, from the cluster's metadata."""
    found = admin_client(ctx.settings).list_topics(timeout=30).topics
    return {topic: len(found[topic].partitions) for topic in topics if topic in found}


def stream_loop(
    ctx: ServiceContext, processes: LearningProcesses, topics: list[str], handler: Handler, **options: Any
) -> StreamLoop:
    """The service's loop; one of several learning processes consumes in a group of its own.

    Each process is the one member of its group (``eddy-learning-K``), handed every partition, and reads only
    its learners' (``LearningService.on_assign``); the offsets it commits never meet another process's.
    Learning is never transactional (``eddy.runtime.service.NOT_TRANSACTIONAL``): the group names only its consumer.
    """
    group = None if processes.count == 1 else f"{ctx.settings.group_prefix}-learning-{processes.index}"
    return ctx.stream_loop(topics, handler, group=group, **options)


if __name__ == "__main__":
    sys.exit(main())
