"""The learning service around its pure handlers: restore, checkpoint, publish.

One learner per model of each stream (the champion and every challenger), the
single writer of that model's lineage. Every learner of a stream reads the same
input; each joins labels with its own model's predictions (a challenger's are
shadow predictions, logged with its own features) and keeps its own checkpoint.
Only the champion's learner dead-letters labels (late, duplicate, unusable), so
that each such label is dead-lettered once.

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
from shared.contracts import ModelSpec
from shared.kafka import cluster_id, scan
from shared.loop import BatchResult, InRecord, Offsets, StreamLoop
from shared.models import ModelState
from shared.service import ServiceContext, code_version
from shared.topics import StreamTopics

log = logging.getLogger("services.learning")


class LearningService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        # Checkpoints record the end of the learners' S.labeled output (see checkpoint()).
        ctx.producer.track_offsets = True
        self.cluster = cluster_id(ctx.settings)
        self.code_version = code_version()
        limits = join_limits()
        self.learners: dict[tuple[str, str], Learner] = {}
        for stream, contract in ctx.contracts.items():
            for spec in contract.models:
                state = self._restore(stream, spec)
                self.learners[(stream, spec.name)] = Learner(
                    contract, state, limits, champion=spec is contract.champion
                )
        self._published: dict[tuple[str, str], int] = {}
        self._last_snapshot = 0.0
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        for (stream, model), learner in self.learners.items():
            learner.state.suppress |= self._already_emitted(stream, model, learner.state.labeled_offsets)

    def _restore(self, stream: str, spec: ModelSpec) -> LearnerState:
        path = checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, spec.name)
        saved = checkpoint.load(path)
        where = {"stream": stream, "model": spec.name}
        if saved is None:
            log.info("no checkpoint: fresh model", extra=where)
            return LearnerState(ModelState.fresh(stream, spec))
        if saved.cluster_id != self.cluster:
            # A new cluster holds none of the input the offsets point into; keep what the model learned.
            log.warning("checkpoint from another Kafka cluster: keeping the model, re-reading input from the start")
            saved.state.forget_inputs()
        log.info("restored checkpoint", extra={**where, "learned": saved.state.model.learned_count})
        return saved.state

    def _already_emitted(self, stream: str, model: str, start: dict[str, int]) -> set[str]:
        """Ids of ``model`` in S.labeled after ``start``: what a crashed predecessor wrote after the checkpoint."""
        topic = StreamTopics(stream).labeled
        serde = self.ctx.serdes.for_topic(topic)
        # No time limit: a scan cut short would let labeled examples be written twice.
        written = scan(self.ctx.settings, [topic], start, timeout_s=math.inf)
        seen = {
            example["event_id"]
            for example in map(serde.decode, (m.value() for m in written))
            if example["model_name"] == model
        }
        if seen:
            log.info(
                "labeled examples already written after the checkpoint",
                extra={"stream": stream, "model": model, "count": len(seen)},
            )
        return seen

    def handle(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for (stream, _), learner in self.learners.items():
            offsets = learner.state.offsets
            # A learner whose checkpoint is ahead of the others' has seen some of this input already.
            mine = [r for r in records if r.stream == stream and r.offset >= offsets.get(f"{r.topic}:{r.partition}", 0)]
            if mine:
                one = learner(mine)
                result.outputs.extend(one.outputs)
                result.dead.extend(one.dead)
        return result

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets come from the checkpoints, not from the group: they are what the saved models have seen.
        # The learners of a stream may have been checkpointed at different points (a challenger added
        # later starts from the beginning): the earliest wins, and handle() skips what each has seen.
        for p in partitions:
            key = f"{p.topic}:{p.partition}"
            saved = [lrn.state.offsets.get(key) for lrn in self._of_stream(StreamTopics.stream_of(p.topic))]
            p.offset = OFFSET_BEGINNING if not saved or None in saved else min(o for o in saved if o is not None)
        consumer.assign(partitions)

    def on_batch_done(self, offsets: Offsets, loop: StreamLoop) -> None:
        # Every consumed record counts, including undecodable ones the loop dead-lettered.
        for (topic, partition), offset in offsets.items():
            for learner in self._of_stream(StreamTopics.stream_of(topic)):
                state = learner.state
                key = f"{topic}:{partition}"
                state.offsets[key] = max(offset, state.offsets.get(key, 0))
        self._dirty = True
        self._when_due()
        loop.commit(offsets)

    def _of_stream(self, stream: str) -> list[Learner]:
        return [learner for (s, _), learner in self.learners.items() if s == stream]

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
        for (stream, model), learner in self.learners.items():
            state = learner.state
            labeled = StreamTopics(stream).labeled
            for (topic, partition), offset in produced.items():
                if topic == labeled:
                    key = f"{topic}:{partition}"
                    state.labeled_offsets[key] = max(offset, state.labeled_offsets.get(key, 0))
            started = time.perf_counter()
            checkpoint.save(
                checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, model),
                checkpoint.Checkpoint(self.cluster, state),
            )
            metrics.CHECKPOINT_SECONDS.labels(stream).observe(time.perf_counter() - started)

    def publish(self, force: bool = False) -> None:
        """Publish the model of every learner that learned something since its last snapshot."""
        self._last_snapshot = time.monotonic()
        for (stream, name), learner in self.learners.items():
            model = learner.state.model
            if not force and self._published.get((stream, name)) == model.learned_count:
                continue
            model.source_offsets = dict(learner.state.offsets)
            topic = StreamTopics(stream).models
            data = self.ctx.serdes.for_topic(topic).encode(model.to_snapshot_record(self.code_version))
            self.ctx.producer.produce(topic, data, model.spec.name.encode())
            self._published[(stream, name)] = model.learned_count
            metrics.SNAPSHOTS.labels(stream, model.spec.name).inc()
        self.ctx.producer.confirm()
        self.ctx.health.set(
            learned={s: lrn.state.model.learned_count for (s, _), lrn in self.learners.items() if lrn.champion},
            learned_by_model={f"{s}/{m}": lrn.state.model.learned_count for (s, m), lrn in self.learners.items()},
        )
