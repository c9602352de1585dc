"""The learning service around its pure handlers: restore, checkpoint, publish.

One learner per stream, the single writer of its model lineage.

- After each batch whose labeled examples are acknowledged, and at most every
  ``EDDY_SNAPSHOT_INTERVAL_S``, it publishes the model to ``S.models`` for
  inference to hot-swap.
- Every ``EDDY_CHECKPOINT_INTERVAL_S`` (and when idle or stopping), it writes
  the full checkpoint: model, join state, learned ids and input offsets.

After a crash it restarts from the checkpoint: input after it is read and
learned again (the restored model has not learned it), and the labeled
examples a predecessor already wrote past the checkpoint are found in
``S.labeled`` and not written twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.learning import checkpoint, metrics
from services.learning.config import join_limits
from services.learning.handlers import Learner, LearnerState
from shared.kafka import cluster_id, scan
from shared.loop import BatchResult, InRecord, Offsets, StreamLoop
from shared.models import ModelState
from shared.service import ServiceContext, code_version
from shared.topics import StreamTopics

log = logging.getLogger("services.learning")


class LearningService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        # Checkpoints record the end of the learner's S.labeled output (see checkpoint()).
        ctx.producer.track_offsets = True
        self.cluster = cluster_id(ctx.settings)
        self.code_version = code_version()
        limits = join_limits()
        self.learners = {name: Learner(c, self._restore(name), limits) for name, c in ctx.contracts.items()}
        self._published: dict[str, int] = {}
        self._last_snapshot = 0.0
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        for stream, learner in self.learners.items():
            learner.state.suppress |= self._already_emitted(stream, learner.state.labeled_offsets)

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

    def _already_emitted(self, stream: str, start: dict[str, int]) -> set[str]:
        """Event ids in S.labeled after ``start``: what a crashed predecessor wrote after the checkpoint."""
        topic = StreamTopics(stream).labeled
        serde = self.ctx.serdes.for_topic(topic)
        # No time limit: a scan cut short would let labeled examples be written twice.
        written = scan(self.ctx.settings, [topic], start, timeout_s=math.inf)
        seen = {serde.decode(m.value())["event_id"] for m in written}
        if seen:
            log.info(
                "labeled examples already written after the checkpoint", extra={"stream": stream, "count": len(seen)}
            )
        return seen

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
        self._when_due()
        loop.commit(offsets)

    def on_idle(self) -> None:
        # Idle moments come between every trickle of input: the intervals still apply, so a quiet
        # stream is checkpointed within one interval and a busy one is not checkpointed constantly.
        self._when_due()

    def _when_due(self) -> None:
        now = time.monotonic()
        if self._dirty and now - self._last_checkpoint >= self.ctx.settings.checkpoint_interval_s:
            self.checkpoint()
        if now - self._last_snapshot >= self.ctx.settings.snapshot_interval_s:
            self.publish()

    def checkpoint(self) -> None:
        """Write every learner's full state; called only when all its output is acknowledged."""
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        produced = self.ctx.producer.last_offsets
        for stream, learner in self.learners.items():
            state = learner.state
            labeled = StreamTopics(stream).labeled
            for (topic, partition), offset in produced.items():
                if topic == labeled:
                    key = f"{topic}:{partition}"
                    state.labeled_offsets[key] = max(offset, state.labeled_offsets.get(key, 0))
            started = time.perf_counter()
            checkpoint.save(
                checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream),
                checkpoint.Checkpoint(self.cluster, state),
            )
            metrics.CHECKPOINT_SECONDS.labels(stream).observe(time.perf_counter() - started)

    def publish(self, force: bool = False) -> None:
        """Publish the model of every learner that learned something since its last snapshot."""
        self._last_snapshot = time.monotonic()
        for stream, learner in self.learners.items():
            model = learner.state.model
            if not force and self._published.get(stream) == model.learned_count:
                continue
            model.source_offsets = dict(learner.state.offsets)
            topic = StreamTopics(stream).models
            data = self.ctx.serdes.for_topic(topic).encode(model.to_snapshot_record(self.code_version))
            self.ctx.producer.produce(topic, data, model.spec.name.encode())
            self._published[stream] = model.learned_count
            metrics.SNAPSHOTS.labels(stream, model.spec.name).inc()
        self.ctx.producer.confirm()
        self.ctx.health.set(learned={s: lrn.state.model.learned_count for s, lrn in self.learners.items()})
