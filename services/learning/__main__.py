"""Run the learning service: ``python -m services.learning``.

One learner per stream, a single writer of the model lineage. After each batch
whose labeled examples are confirmed delivered, and at most every snapshot
interval, it checkpoints (model + join state + offsets) and then publishes the
model to S.models for inference to hot-swap.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.learning import checkpoint, metrics
from services.learning.handlers import Learner, LearnerState
from shared.kafka import cluster_id
from shared.loop import BatchResult, InRecord, Offsets, StreamLoop
from shared.models import ModelState
from shared.service import ServiceContext, bootstrap, code_version
from shared.topics import StreamTopics

log = logging.getLogger("services.learning")


class LearningService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.cluster = cluster_id(ctx.settings)
        self.code_version = code_version()
        self.learners = {name: Learner(c, self._restore(name)) for name, c in ctx.contracts.items()}
        self._published: dict[str, int] = {}
        self._last_checkpoint = 0.0
        self._dirty = False

    def _restore(self, stream: str) -> LearnerState:
        path = checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream)
        saved = checkpoint.load(path)
        contract = self.ctx.contracts[stream]
        if saved is None:
            log.info("no checkpoint: fresh model", extra={"stream": stream})
            return LearnerState(ModelState.fresh(stream, contract.champion))
        if saved.cluster_id != self.cluster:
            # A new cluster holds none of the input the offsets point into; keep what the model learned.
            log.warning("checkpoint from another Kafka cluster: keeping the model, re-reading input from the start")
            saved.state.forget_inputs()
        log.info("restored checkpoint", extra={"stream": stream, "learned": saved.state.model.learned_count})
        return saved.state

    def handle(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for stream, learner in self.learners.items():
            mine = [r for r in records if r.stream == stream]
            if mine:
                one = learner(mine)
                result.outputs.extend(one.outputs)
                result.dead.extend(one.dead)
        return result

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets come from the checkpoint, not from the group: they are what the saved model has seen.
        for p in partitions:
            offsets = self.learners[StreamTopics.stream_of(p.topic)].state.offsets
            p.offset = offsets.get(f"{p.topic}:{p.partition}", OFFSET_BEGINNING)
        consumer.assign(partitions)

    def on_batch_done(self, offsets: Offsets, loop: StreamLoop) -> None:
        # Every consumed record counts, including undecodable ones the loop dead-lettered.
        for (topic, partition), offset in offsets.items():
            self.learners[StreamTopics.stream_of(topic)].state.offsets[f"{topic}:{partition}"] = offset
        self._dirty = True
        if time.monotonic() - self._last_checkpoint >= self.ctx.settings.snapshot_interval_s:
            self.checkpoint_and_publish()
        loop.commit(offsets)

    def on_idle(self) -> None:
        if self._dirty:
            self.checkpoint_and_publish()

    def checkpoint_and_publish(self) -> None:
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        for stream, learner in self.learners.items():
            state = learner.state
            state.model.source_offsets = dict(state.offsets)
            started = time.perf_counter()
            checkpoint.save(
                checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream),
                checkpoint.Checkpoint(self.cluster, state),
            )
            metrics.CHECKPOINT_SECONDS.labels(stream).observe(time.perf_counter() - started)
            if self._published.get(stream) == state.model.learned_count:
                continue
            topic = StreamTopics(stream).models
            record = state.model.to_snapshot_record(self.code_version)
            data = self.ctx.serdes.for_topic(topic).encode(record)
            self.ctx.producer.produce(topic, data, state.model.spec.name.encode())
            self._published[stream] = state.model.learned_count
            metrics.SNAPSHOTS.labels(stream, state.model.spec.name).inc()
            self.ctx.health.set(learned={s: lrn.state.model.learned_count for s, lrn in self.learners.items()})
        self.ctx.producer.confirm()


def main() -> int:
    ctx = bootstrap("learning")
    service = LearningService(ctx)
    topics = ctx.topics("predictions") + ctx.topics("feedback")
    loop: StreamLoop
    loop = StreamLoop(
        service="learning",
        consumer=ctx.consumer("eddy-learning"),
        producer=ctx.producer,
        serdes=ctx.serdes,
        topics=topics,
        handler=service.handle,
        batch_size=ctx.settings.batch_size,
        batch_timeout_s=ctx.settings.batch_timeout_s,
        on_assign=service.on_assign,
        on_batch_done=lambda offsets: service.on_batch_done(offsets, loop),
        on_idle=service.on_idle,
        health=ctx.health,
    )
    # Publish at start too: a restarted broker or a crash between checkpoint and publish leaves inference behind.
    service._published.clear()
    service.checkpoint_and_publish()
    try:
        loop.run(ctx.stop)
    finally:
        service.checkpoint_and_publish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
