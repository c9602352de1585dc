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

A sharded model (``learning: {mode: sharded, shards: N}``) is N learners per version, shard ``s``
learning only the input partitions ``p % N == s``, each with its own checkpoint and its own snapshots
(carrying the shard); with ``EDDY_LEARNING_PROCESSES=M``, this process runs only the shards
``s % M == EDDY_LEARNING_PROCESS`` (and, as process 0, the exact models): see ``shards.py``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eddy.avro.serde import SerdeError
from eddy.contracts.durations import ContractError
from eddy.contracts.learning import partition_problem
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.history.reader import start_up_records
from eddy.kafka.client import cluster_id
from eddy.kafka.retention import join_retention_problem, snapshot_key
from eddy.ml.models import ModelState, SnapshotError, load_snapshot_estimator
from eddy.ml.roles import ARCHIVED, VersionKey, contract_roles, roles_of_event
from eddy.runtime.dlq import MAX_RECORD_BYTES
from eddy.runtime.feed import SideFeed
from eddy.runtime.loop import BatchResult, InRecord, OffsetGap, Offsets, StreamLoop
from eddy.runtime.service import ServiceContext, code_version
from eddy.services.learning import checkpoint, metrics
from eddy.services.learning.config import LearningProcesses, join_limits, learning_processes
from eddy.services.learning.handlers import Learner, LearnerState
from eddy.services.learning.shards import Shard, learns_partition, owned_shards

log = logging.getLogger("eddy.services.learning")

# A learner: its stream, model version and shard (None: the exact model).
LearnerKey = tuple[str, VersionKey, Shard]


class LearningService:
    def __init__(
        self, ctx: ServiceContext, feed: SideFeed | None = None, processes: LearningProcesses | None = None
    ) -> None:
        self.ctx = ctx
        self.feed = feed
        self.processes = processes or learning_processes()
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
        self.learners: dict[LearnerKey, Learner] = {}
        # Registered versions' starting models, from the registry's snapshots, until the alias table needs them.
        self._registered: dict[tuple[str, VersionKey], dict] = {}
        for stream, contract in ctx.contracts.items():
            for spec in contract.models:
                for shard in owned_shards(spec, self.processes):
                    versions = checkpoint.saved_versions(ctx.settings.state_dir, stream, spec.name, shard)
                    for version in versions or [1]:
                        self._add(stream, self._restore(stream, spec, version, shard), shard)
        # Per learner, the learned count and reading of S.feedback last published.
        self._published: dict[LearnerKey, tuple[int, dict[str, int]]] = {}
        self._last_snapshot = 0.0
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        for (stream, key, shard), learner in self.learners.items():
            learner.state.suppress |= self._already_emitted(stream, key, shard, learner.state.labeled_offsets)

    def _add(self, stream: str, state: LearnerState, shard: Shard = None) -> Learner:
        key = VersionKey(state.model.spec.name, state.model.version)
        champion = key == self.roles[stream].champion
        learner = Learner(self.ctx.contracts[stream], state, self.limits, champion=champion)
        self.learners[(stream, key, shard)] = learner
        return learner

    def _path(self, stream: str, name: str, version: int, shard: Shard) -> Path:
        return checkpoint.checkpoint_path(self.ctx.settings.state_dir, stream, name, version, shard)

    def _restore(self, stream: str, spec: ModelSpec, version: int, shard: Shard = None) -> LearnerState:
        saved = checkpoint.load(self._path(stream, spec.name, version, shard), self.ctx.keys)
        where = {"stream": stream, "model": f"{spec.name}@{version}", "shard": shard}
        if saved is None:
            log.info("no checkpoint: fresh model", extra=where)
            return LearnerState(ModelState.fresh(stream, spec, version))
        if saved.cluster_id != self.cluster:
            # A new cluster holds none of the input the offsets point into; keep what the model learned.
            log.warning("checkpoint from another Kafka cluster: keeping the model, re-reading input from the start")
            saved.state.forget_inputs()
        log.info("restored checkpoint", extra={**where, "learned": saved.state.model.learned_count})
        return saved.state

    def _already_emitted(self, stream: str, key: VersionKey, shard: Shard, start: dict[str, int]) -> set[str]:
        """Ids of ``key`` (its ``shard``) in S.labeled after ``start``: what a crashed predecessor wrote after the
        checkpoint."""
        topic = StreamTopics(stream).labeled
        serde = self.ctx.serdes.for_topic(topic)

        # No time limit: a read cut short would let labeled examples be written twice.
        def read() -> list[bytes | None]:
            return [m.value() for m in start_up_records(self.ctx.settings, [topic], None, start=start)]

        written = self.ctx.until_authorized(read, f"read what was written to {topic}")
        seen = {
            example["event_id"]
            for example in map(serde.decode, written)
            if (example["model_name"], example["model_version"]) == (key.name, key.version)
            and example.get("shard") == shard
        }
        if seen:
            log.info(
                "labeled examples already written after the checkpoint",
                extra={"stream": stream, "model": str(key), "shard": shard, "count": len(seen)},
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
            if key.name not in names:
                continue
            missing = [s for s in owned_shards(contract.model(key.name), self.processes)
                       if (stream, key, s) not in self.learners]  # fmt: skip
            for shard in missing:
                state = self._joining(stream, key, shard)
                if state is not None:
                    self._add(stream, state, shard)
                    log.info("learning a new version", extra={"stream": stream, "model": str(key), "shard": shard})
            if missing and all((stream, key, s) in self.learners for s in missing):
                # Every shard of the version started from the registry's one snapshot.
                self._registered.pop((stream, key), None)
        for (s, key, shard), learner in list(self.learners.items()):
            if s != stream:
                continue
            if roles.alias_of(key) == ARCHIVED:
                self._retire(stream, key, shard)
            else:
                learner.champion = key == roles.champion

    def _joining(self, stream: str, key: VersionKey, shard: Shard = None) -> LearnerState | None:
        """The state a version (one of its shards) starts learning from.

        Its checkpoint if it has one; else, for an archived version a rollback revived, the model it
        had when archived; else the registry's snapshot of it (every shard of a sharded version starts
        from that one snapshot). The last two learn the input from here on: what the stream's learners
        have read so far of the partitions the learner learns.
        """
        path = self._path(stream, key.name, key.version, shard)
        saved = checkpoint.load(path, self.ctx.keys)
        if saved is not None and saved.cluster_id == self.cluster:
            return saved.state
        retired = checkpoint.load(path.with_suffix(checkpoint.ARCHIVED_SUFFIX), self.ctx.keys)
        if retired is not None:
            model = retired.state.model
            log.info("archived version revived", extra={"stream": stream, "model": str(key)})
        else:
            # Kept until every shard has joined (_apply_roles): each starts from it.
            record = self._registered.get((stream, key))
            if record is None:
                return None  # its snapshot has not been read yet: the next drain brings it
            try:
                estimator = load_snapshot_estimator(record, self.ctx.keys)
            except SnapshotError:
                log.exception("registered snapshot rejected", extra={"stream": stream, "model": str(key)})
                return None
            spec = self.ctx.contracts[stream].model(key.name)
            model = ModelState(stream, spec, estimator, key.version, record["learned_count"])
        shards = self.ctx.contracts[stream].model(key.name).shards
        start: dict[str, int] = {}
        for learner in self._of_stream(stream):
            for partition, offset in learner.state.offsets.items():
                if learns_partition(shard, shards, int(partition.rpartition(":")[2])):
                    start[partition] = max(offset, start.get(partition, 0))
        model.learned_from = dict(start)
        # Published at the next chance: inference may have nothing of this version to serve yet.
        self._last_snapshot = 0.0
        return LearnerState(model, offsets=dict(start))

    def _retire(self, stream: str, key: VersionKey, shard: Shard = None) -> None:
        del self.learners[(stream, key, shard)]
        path = self._path(stream, key.name, key.version, shard)
        # Kept on disk under another name: a rollback to the version resumes from it.
        if path.exists():
            path.replace(path.with_suffix(checkpoint.ARCHIVED_SUFFIX))
        self._published.pop((stream, key, shard), None)
        log.info("version archived: stopped learning", extra={"stream": stream, "model": str(key), "shard": shard})

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
        for (stream, _, shard), learner in self.learners.items():
            # A learner whose checkpoint is ahead of the others' has seen some of this input already.
            start = _by_partition(learner.state.offsets)
            mine = [r for r in by_stream.get(stream, ()) if r.offset >= start.get((r.topic, r.partition), 0)]
            if shard is not None:
                shards = learner.state.model.spec.shards
                mine = [r for r in mine if learns_partition(shard, shards, r.partition)]
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
        if self.processes.count > 1:
            # This process's own consumer group hands it every partition: it reads only its learners'.
            # Narrowed in place: the loop places what this callback leaves in the list.
            partitions[:] = [p for p in partitions if self._of_stream(StreamTopics.stream_of(p.topic), p.partition)]
        for p in partitions:
            key = f"{p.topic}:{p.partition}"
            learners = self._of_stream(StreamTopics.stream_of(p.topic), p.partition)
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
        for learner in self._of_stream(stream, gap.partition):
            learner.prediction_gap(gap.partition, gap.first, gap.last, gap.log_start)

    def on_batch_done(self, offsets: Offsets, loop: StreamLoop) -> None:
        # Every consumed record counts, including undecodable ones the loop dead-lettered.
        for (topic, partition), offset in offsets.items():
            for learner in self._of_stream(StreamTopics.stream_of(topic), partition):
                state = learner.state
                key = f"{topic}:{partition}"
                state.offsets[key] = max(offset, state.offsets.get(key, 0))
        self._dirty = True
        self._when_due(loop)
        loop.commit(offsets)

    def _of_stream(self, stream: str, partition: int | None = None) -> list[Learner]:
        """The learners of ``stream``; with ``partition``, those that learn its records."""
        return [
            learner
            for (s, _, shard), learner in self.learners.items()
            if s == stream
            and (partition is None or learns_partition(shard, learner.state.model.spec.shards, partition))
        ]

    def on_idle(self, loop: StreamLoop | None = None) -> None:
        self.follow_registry()
        # Idle moments come between every trickle of input: the intervals still apply, so a quiet
        # stream is checkpointed within one interval and a busy one is not checkpointed constantly.
        self._when_due(loop)

    def _when_due(self, loop: StreamLoop | None = None) -> None:
        now = time.monotonic()
        if self._dirty and now - self._last_checkpoint >= self.ctx.settings.checkpoint_interval_s:
            if loop is not None and loop.batches_in_flight:
                # The models have learned batches whose output is not acknowledged yet, and their offsets are
                # not in the learners' state: a checkpoint now would be learned again after a restart. Wait for
                # the quiet point the loop makes after its next batch.
                loop.settle_all_next()
            else:
                self.checkpoint()
        if now - self._last_snapshot >= self.ctx.settings.snapshot_interval_s:
            self.publish()

    def checkpoint(self) -> None:
        """Write every learner's full state; called only when all its output is acknowledged."""
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        produced = self.ctx.producer.last_offsets
        for (stream, key, shard), learner in self.learners.items():
            state = learner.state
            labeled = StreamTopics(stream).labeled
            for (topic, partition), offset in produced.items():
                if topic == labeled:
                    at = f"{topic}:{partition}"
                    state.labeled_offsets[at] = max(offset, state.labeled_offsets.get(at, 0))
            started = time.perf_counter()
            checkpoint.save(
                self._path(stream, key.name, key.version, shard),
                checkpoint.Checkpoint(self.cluster, state),
                self.ctx.keys,
            )
            metrics.CHECKPOINT_SECONDS.labels(stream).observe(time.perf_counter() - started)

    def publish(self, force: bool = False) -> None:
        """Publish the model of every learner that learned something since its last snapshot."""
        self._last_snapshot = time.monotonic()
        for (stream, key, shard), learner in self.learners.items():
            model = learner.state.model
            # Also when labels were read and none learned (duplicates, dead letters): the snapshot's reading of
            # S.feedback is how monitoring knows no label waits (services/monitoring/freshness.py).
            feedback = StreamTopics(stream).feedback + ":"
            read = {k: o for k, o in learner.state.offsets.items() if k.startswith(feedback)}
            if not force and self._published.get((stream, key, shard)) == (model.learned_count, read):
                continue
            model.source_offsets = dict(learner.state.offsets)
            topic = StreamTopics(stream).models
            record = {**model.to_snapshot_record(self.ctx.keys, self.code_version), "shard": shard}
            data = self.ctx.serdes.for_topic(topic).encode(record)
            self._published[(stream, key, shard)] = (model.learned_count, read)
            if len(data) > MAX_RECORD_BYTES:
                self._too_large(stream, model, len(data))
                continue
            # One key per version (and shard): S.models is compacted (eddy.kafka.retention).
            self.ctx.producer.produce(topic, data, shard_snapshot_key(model.spec.name, model.version, shard).encode())
            metrics.SNAPSHOTS.labels(stream, model.spec.name).inc()
        self.ctx.producer.confirm()
        self.ctx.health.set(
            learned=_learned_by_stream(self.learners),
            learned_by_model={_learner_name(k): lrn.state.model.learned_count for k, lrn in self.learners.items()},
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


def check_partitions(contracts: dict[str, StreamContract], partitions: dict[str, int]) -> None:
    """Refuse to start when a stream's topics cannot carry its models' shards (``partitions``: topic -> count).

    Raises
    ------
    ContractError
        Naming the topic, its partition count and the model, for a count that is not a multiple of the shards.

    >>> from eddy.contracts.learning import LearningSpec
    >>> spec = ModelSpec("m", (), ("x",), LearningSpec("sharded", 2))
    >>> contract = StreamContract("s", {}, "event_id", "event_time_ms", (), "binary", (spec,))
    >>> check_partitions({"s": contract}, {"s.predictions": 4, "s.feedback": 4})
    >>> check_partitions({"s": contract}, {"s.predictions": 4, "s.feedback": 3})
    Traceback (most recent call last):
    ...
    eddy.contracts.durations.ContractError: s.feedback has 3 partitions: model 'm' learns in 2 shards, ...
    """
    for stream, contract in contracts.items():
        shards = {spec.name: spec.shards for spec in contract.models}
        topics = StreamTopics(stream)
        for topic in (topics.predictions, topics.feedback):
            problem = partition_problem(shards, partitions[topic], topic) if topic in partitions else None
            if problem is not None:
                raise ContractError(problem)


def shard_snapshot_key(name: str, version: int, shard: Shard) -> str:
    """The S.models key of a learner's snapshots: one per version, and per shard of a sharded version.

    >>> shard_snapshot_key("m", 2, None), shard_snapshot_key("m", 2, 1)
    ('m@2', 'm@2/shard-1')
    """
    key = snapshot_key(name, version)
    return key if shard is None else f"{key}/shard-{shard}"


def _learner_name(key: LearnerKey) -> str:
    """``stream/model@version``, and ``#shard`` for a shard of a sharded model (as /healthz shows them)."""
    stream, version, shard = key
    return f"{stream}/{version}" if shard is None else f"{stream}/{version}#{shard}"


def _learned_by_stream(learners: dict[LearnerKey, Learner]) -> dict[str, int]:
    """Labels the champion learned per stream: every shard's together."""
    learned: dict[str, int] = {}
    for (stream, _, _), learner in learners.items():
        if learner.champion:
            learned[stream] = learned.get(stream, 0) + learner.state.model.learned_count
    return learned


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
