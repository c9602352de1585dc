"""The learning service around its pure handlers: restore, checkpoint, publish.

One learner per active model version of each stream (the champion, the
challenger and every shadow), the single writer of that version's lineage.
Every learner of a stream reads the same input; each joins labels with its own
version's predictions (logged with its own features) and keeps its own
checkpoint. Only the champion's learner dead-letters labels (late, duplicate,
unusable), so that each such label is dead-lettered once.

Which versions are active comes from the model registry's alias table on
``eddy.model-events``; a new version's starting model comes from the snapshot
the registry publishes on ``S.models``. A new version learns from the input
after the point where it joined (``learned_from``), archived ones stop.

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

import itertools
import logging
import math
import time
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eddy.avro.serde import SerdeError
from eddy.contracts.stream import ModelSpec
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.kafka.client import cluster_id, scan
from eddy.kafka.retention import join_retention_problem, snapshot_key
from eddy.ml.models import ModelState, SnapshotError, load_snapshot_estimator
from eddy.ml.roles import ARCHIVED, VersionKey, contract_roles, roles_of_event
from eddy.runtime.dlq import MAX_RECORD_BYTES
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import BatchResult, InRecord, OffsetGap, Offsets, StreamLoop
from eddy.runtime.service import ServiceContext, code_version
from eddy.services.learning import checkpoint, metrics
from eddy.services.learning.config import join_limits
from eddy.services.learning.handlers import Learner, LearnerState

log = logging.getLogger("eddy.services.learning")


class LearningService:
    def __init__(self, ctx: ServiceContext, feed: SideFeed | None = None) -> None:
        self.ctx = ctx
        self.feed = feed
        # Checkpoints record the end of the learners' S.labeled output (see checkpoint()).
        ctx.producer.track_offsets = True
        self.cluster = cluster_id(ctx.settings)
        self.code_version = code_version()
        self.limits = join_limits()
        self.roles = {s: contract_roles(c) for s, c in ctx.contracts.items()}
        for contract in ctx.contracts.values():
            problem = join_retention_problem(contract, ctx.settings)
            if problem is not None:
                log.warning("retention too short for the join", extra={"stream": contract.name, "problem": problem})
        self.learners: dict[tuple[str, VersionKey], Learner] = {}
        # Registered versions' starting models, from the registry's snapshots, until the alias table needs them.
        self._registered: dict[tuple[str, VersionKey], dict] = {}
        for stream, contract in ctx.contracts.items():
            for spec in contract.models:
                for version in checkpoint.saved_versions(ctx.settings.state_dir, stream, spec.name) or [1]:
                    self._add(stream, self._restore(stream, spec, version))
        # Per version, the learned count and reading of S.feedback last published.
        self._published: dict[tuple[str, VersionKey], tuple[int, dict[str, int]]] = {}
        self._last_snapshot = 0.0
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        for (stream, key), learner in self.learners.items():
            learner.state.suppress |= self._already_emitted(stream, key, learner.state.labeled_offsets)

    def _add(self, stream: str, state: LearnerState) -> Learner:
        key = VersionKey(state.model.spec.name, state.model.version)
        champion = key == self.roles[stream].champion
        learner = Learner(self.ctx.contracts[stream], state, self.limits, champion=champion)
        self.learners[(stream, key)] = learner
        return learner

    def _restore(self, stream: str, spec: ModelSpec, version: int) -> LearnerState:
        path = checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, spec.name, version)
        saved = checkpoint.load(path, self.ctx.keys)
        where = {"stream": stream, "model": f"{spec.name}@{version}"}
        if saved is None:
            log.info("no checkpoint: fresh model", extra=where)
            return LearnerState(ModelState.fresh(stream, spec, version))
        if saved.cluster_id != self.cluster:
            # A new cluster holds none of the input the offsets point into; keep what the model learned.
            log.warning("checkpoint from another Kafka cluster: keeping the model, re-reading input from the start")
            saved.state.forget_inputs()
        log.info("restored checkpoint", extra={**where, "learned": saved.state.model.learned_count})
        return saved.state

    def _already_emitted(self, stream: str, key: VersionKey, start: dict[str, int]) -> set[str]:
        """Ids of ``key`` in S.labeled after ``start``: what a crashed predecessor wrote after the checkpoint."""
        topic = StreamTopics(stream).labeled
        serde = self.ctx.serdes.for_topic(topic)
        # No time limit: a scan cut short would let labeled examples be written twice.
        written = scan(self.ctx.settings, [topic], start, timeout_s=math.inf)
        seen = {
            example["event_id"]
            for example in map(serde.decode, (m.value() for m in written))
            if (example["model_name"], example["model_version"]) == (key.name, key.version)
        }
        if seen:
            log.info(
                "labeled examples already written after the checkpoint",
                extra={"stream": stream, "model": str(key), "count": len(seen)},
            )
        return seen

    # -- versions coming and going ---------------------------------------------------------------------

    def follow_registry(self) -> None:
        """Apply what the side feed read: alias tables and registered versions' starting snapshots."""
        if self.feed is None:
            return
        changed: set[str] = set()
        for topic, value, _ in self.feed.drain():
            try:
                record = self.ctx.serdes.for_topic(topic).decode(value)
            except SerdeError:
                continue
            if topic == MODEL_EVENTS_TOPIC:
                roles = roles_of_event(record)
                if roles is not None and roles.stream in self.roles:
                    self.roles[roles.stream] = roles
                    changed.add(roles.stream)
            elif record["stream"] in self.roles and not record["source_offsets"]:
                # Only the registry's snapshots start a version; learning's own carry offsets.
                key = VersionKey(record["model_name"], record["model_version"])
                self._registered[(record["stream"], key)] = record
                changed.add(record["stream"])
        for stream in changed:
            self._apply_roles(stream)

    def _apply_roles(self, stream: str) -> None:
        roles = self.roles[stream]
        contract = self.ctx.contracts[stream]
        names = {m.name for m in contract.models}
        for key in roles.active:
            if (stream, key) in self.learners or key.name not in names:
                continue
            state = self._joining(stream, key)
            if state is not None:
                self._add(stream, state)
                log.info("learning a new version", extra={"stream": stream, "model": str(key)})
        for (s, key), learner in list(self.learners.items()):
            if s != stream:
                continue
            if roles.alias_of(key) == ARCHIVED:
                self._retire(stream, key)
            else:
                learner.champion = key == roles.champion

    def _joining(self, stream: str, key: VersionKey) -> LearnerState | None:
        """The state a version starts learning from.

        Its checkpoint if it has one; else, for an archived version a rollback revived, the model it
        had when archived; else the registry's snapshot of it. The last two learn the input from
        here on: what the stream's learners have read so far.
        """
        path = checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, key.name, key.version)
        saved = checkpoint.load(path, self.ctx.keys)
        if saved is not None and saved.cluster_id == self.cluster:
            return saved.state
        retired = checkpoint.load(path.with_suffix(checkpoint.ARCHIVED_SUFFIX), self.ctx.keys)
        if retired is not None:
            model = retired.state.model
            log.info("archived version revived", extra={"stream": stream, "model": str(key)})
        else:
            record = self._registered.pop((stream, key), None)
            if record is None:
                return None  # its snapshot has not been read yet: the next drain brings it
            try:
                estimator = load_snapshot_estimator(record, self.ctx.keys)
            except SnapshotError:
                log.exception("registered snapshot rejected", extra={"stream": stream, "model": str(key)})
                return None
            spec = self.ctx.contracts[stream].model(key.name)
            model = ModelState(stream, spec, estimator, key.version, record["learned_count"])
        start: dict[str, int] = {}
        for learner in self._of_stream(stream):
            for partition, offset in learner.state.offsets.items():
                start[partition] = max(offset, start.get(partition, 0))
        model.learned_from = dict(start)
        # Published at the next chance: inference may have nothing of this version to serve yet.
        self._last_snapshot = 0.0
        return LearnerState(model, offsets=dict(start))

    def _retire(self, stream: str, key: VersionKey) -> None:
        del self.learners[(stream, key)]
        path = checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, key.name, key.version)
        # Kept on disk under another name: a rollback to the version resumes from it.
        if path.exists():
            path.replace(path.with_suffix(checkpoint.ARCHIVED_SUFFIX))
        self._published.pop((stream, key), None)
        log.info("version archived: stopped learning", extra={"stream": stream, "model": str(key)})

    # -- the loop ---------------------------------------------------------------------------------------

    def handle(self, records: Sequence[InRecord]) -> BatchResult:
        started = time.monotonic()
        result = self._handle(records)
        if self.limits.max_records_per_s:
            # The drill's hold (EDDY_LEARNING_MAX_RECORDS_PER_S): this batch may not go faster than the rate.
            time.sleep(max(0.0, len(records) / self.limits.max_records_per_s - (time.monotonic() - started)))
        return result

    def _handle(self, records: Sequence[InRecord]) -> BatchResult:
        self.follow_registry()
        result = BatchResult()
        by_stream: dict[str, list[InRecord]] = {}
        for topic, group in itertools.groupby(records, key=lambda r: r.topic):
            by_stream.setdefault(StreamTopics.stream_of(topic), []).extend(group)
        for (stream, _), learner in self.learners.items():
            # A learner whose checkpoint is ahead of the others' has seen some of this input already.
            start = _by_partition(learner.state.offsets)
            mine = [r for r in by_stream.get(stream, ()) if r.offset >= start.get((r.topic, r.partition), 0)]
            if mine:
                one = learner(mine)
                result.outputs.extend(one.outputs)
                result.dead.extend(one.dead)
        return result

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets come from the checkpoints, not from the group: they are what the saved models have seen.
        # The learners of a stream may have been checkpointed at different points (a challenger added
        # later starts from the beginning): the earliest wins, and handle() skips what each has seen.
        # A partition the learners never read starts at the beginning; for learners that have read the stream
        # before, that beginning is offset 0, named explicitly so that records retention deleted meanwhile are
        # reported as a gap by the loop rather than skipped by the client's reset.
        for p in partitions:
            key = f"{p.topic}:{p.partition}"
            learners = self._of_stream(StreamTopics.stream_of(p.topic))
            saved = [lrn.state.offsets.get(key) for lrn in learners]
            if saved and None not in saved:
                p.offset = min(o for o in saved if o is not None)
            else:
                p.offset = 0 if any(lrn.state.offsets for lrn in learners) else OFFSET_BEGINNING
        consumer.assign(partitions)

    def on_gap(self, gap: OffsetGap) -> None:
        """Retention deleted input before it was read (the loop dead-letters the range): predictions lost that
        way leave their labels unjoinable, so every learner of the stream is told, to dead-letter them."""
        stream = StreamTopics.stream_of(gap.topic)
        if gap.topic != StreamTopics(stream).predictions:
            return  # lost labels are the gap's own dead letter: nothing joins them
        for learner in self._of_stream(stream):
            learner.prediction_gap(gap.partition, gap.first, gap.last, gap.log_start)

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
        self.follow_registry()
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
        for (stream, key), learner in self.learners.items():
            state = learner.state
            labeled = StreamTopics(stream).labeled
            for (topic, partition), offset in produced.items():
                if topic == labeled:
                    at = f"{topic}:{partition}"
                    state.labeled_offsets[at] = max(offset, state.labeled_offsets.get(at, 0))
            started = time.perf_counter()
            checkpoint.save(
                checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, key.name, key.version),
                checkpoint.Checkpoint(self.cluster, state),
                self.ctx.keys,
            )
            metrics.CHECKPOINT_SECONDS.labels(stream).observe(time.perf_counter() - started)

    def publish(self, force: bool = False) -> None:
        """Publish the model of every learner that learned something since its last snapshot."""
        self._last_snapshot = time.monotonic()
        for (stream, key), learner in self.learners.items():
            model = learner.state.model
            # Also when labels were read and none learned (duplicates, dead letters): the snapshot's reading of
            # S.feedback is how monitoring knows no label waits (services/monitoring/freshness.py).
            feedback = StreamTopics(stream).feedback + ":"
            read = {k: o for k, o in learner.state.offsets.items() if k.startswith(feedback)}
            if not force and self._published.get((stream, key)) == (model.learned_count, read):
                continue
            model.source_offsets = dict(learner.state.offsets)
            topic = StreamTopics(stream).models
            data = self.ctx.serdes.for_topic(topic).encode(model.to_snapshot_record(self.ctx.keys, self.code_version))
            self._published[(stream, key)] = (model.learned_count, read)
            if len(data) > MAX_RECORD_BYTES:
                self._too_large(stream, model, len(data))
                continue
            # One key per version: S.models is compacted (eddy.kafka.retention).
            self.ctx.producer.produce(topic, data, snapshot_key(model.spec.name, model.version).encode())
            metrics.SNAPSHOTS.labels(stream, model.spec.name).inc()
        self.ctx.producer.confirm()
        self.ctx.health.set(
            learned={s: lrn.state.model.learned_count for (s, _), lrn in self.learners.items() if lrn.champion},
            learned_by_model={f"{s}/{k}": lrn.state.model.learned_count for (s, k), lrn in self.learners.items()},
        )

    def _too_large(self, stream: str, model: ModelState, size: int) -> None:
        """A model grown past Kafka's record limit: it keeps learning (and checkpointing), and says so.

        Producing it would fail the producer (MSG_SIZE_TOO_LARGE) and stop the service, so inference keeps
        the last snapshot that fit; a model this large needs a smaller spec (a tree's ``max_depth``, fewer
        ARF members) or a larger ``message.max.bytes`` on the broker and clients.
        """
        metrics.SNAPSHOTS_TOO_LARGE.labels(stream, model.spec.name).inc()
        message = (
            f"{stream}/{model.spec.name}@{model.version}: a snapshot of {size:,} bytes is over the "
            f"{MAX_RECORD_BYTES:,}-byte record limit; not published, inference keeps the last one that fit"
        )
        log.error("snapshot too large", extra={"stream": stream, "model": model.spec.name, "bytes": size})
        self.ctx.health.set(snapshot_too_large=message)


def _by_partition(offsets: dict[str, int]) -> dict[tuple[str, int], int]:
    """Offsets keyed ``"topic:partition"`` (as checkpoints keep them) keyed by (topic, partition), as records are.

    >>> _by_partition({"s.feedback:3": 12})
    {('s.feedback', 3): 12}
    """
    keyed = {}
    for key, offset in offsets.items():
        topic, _, partition = key.rpartition(":")
        keyed[(topic, int(partition))] = offset
    return keyed
