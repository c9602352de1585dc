"""Retention policy per topic family, retention gaps in the stream loop, and labels whose predictions were deleted."""

from __future__ import annotations

import pickle
from typing import Any

import eddy.kafka.client
import eddy.kafka.retention
import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, TopicPartition
from eddy.core.settings import Settings, SettingsError
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.retention import family_of, join_retention_problem, snapshot_key, topic_retention
from eddy.ml.models import ModelState
from eddy.runtime.dlq import NOT_REPLAYABLE, PREDICTION_DELETED, RETENTION_GAP, read_dlq_headers
from eddy.runtime.loop import OffsetGap, StreamLoop
from eddy.services.learning.handlers import JoinLimits, Learner, LearnerState, PredictionGap

from tests.records import demo_contract, label, prediction, record


def test_every_topic_eddy_creates_has_a_policy() -> None:
    settings = Settings(retention_ms=1000, dlq_retention_ms=2000)
    policies = {t: topic_retention(settings, t) for t in [*StreamTopics("s").all(), *PLATFORM_TOPICS]}
    assert all(policies.values()), [t for t, p in policies.items() if not p]
    for kind in ("raw", "events", "validated", "predictions", "feedback", "labeled", "alerts"):
        assert policies[f"s.{kind}"] == {"cleanup.policy": "delete", "retention.ms": "1000"}
    assert policies["s.dlq"] == policies["eddy.dlq"] == {"cleanup.policy": "delete", "retention.ms": "2000"}
    assert policies["s.profiles"]["cleanup.policy"] == policies["s.models"]["cleanup.policy"] == "compact"
    for forever in ("eddy.model-events", "eddy.model-candidates"):
        assert policies[forever]["retention.ms"] == policies[forever]["retention.bytes"] == "-1"
        assert policies[forever]["cleanup.policy"] == "delete"  # compaction by stream key would erase the audit trail
    assert topic_retention(settings, "someone.elses") == {}


def test_stream_names_with_dots_keep_their_family() -> None:
    assert family_of("team.fraud.predictions") == "predictions"
    assert family_of("eddy.model-events") == "model-events"


def test_replicated_topics_also_get_min_insync_replicas() -> None:
    conf = eddy.kafka.client.topic_config(Settings(replication_factor=3, min_insync_replicas=2), "s.feedback")
    assert conf["min.insync.replicas"] == "2" and conf["cleanup.policy"] == "delete"


def test_retention_settings_from_the_environment() -> None:
    s = Settings.from_env({"EDDY_RETENTION_MS": "-1", "EDDY_DLQ_RETENTION_MS": "86400000"})
    assert (s.retention_ms, s.dlq_retention_ms) == (-1, 86_400_000)
    assert s.kafka_env()["EDDY_RETENTION_MS"] == "-1"
    with pytest.raises(SettingsError, match="EDDY_RETENTION_MS"):
        Settings(retention_ms=0)
    with pytest.raises(SettingsError, match="EDDY_DLQ_RETENTION_MS"):
        Settings(dlq_retention_ms=-5)


def test_join_retention_must_cover_the_lateness_and_a_checkpoint_interval() -> None:
    contract = demo_contract()  # allowed_lateness: 1h
    assert join_retention_problem(contract, Settings()) is None
    assert join_retention_problem(contract, Settings(retention_ms=-1)) is None
    problem = join_retention_problem(contract, Settings(retention_ms=3_600_000))
    assert problem is not None and "allowed lateness" in problem


def test_snapshot_keys_keep_every_version_and_its_registered_artifact_apart() -> None:
    keys = {snapshot_key("m", 1), snapshot_key("m", 2), snapshot_key("m", 1, registered=True)}
    assert len(keys) == 3


# -- the learner and predictions deleted by retention ---------------------------------------------------------------


def learner(champion: bool = True) -> Learner:
    contract = demo_contract()
    state = LearnerState(ModelState.fresh("demo", contract.champion))
    return Learner(contract, state, JoinLimits(), clock=lambda: 1_700_000_005.0, champion=champion)


def pred(i: int, event_time_ms: int, partition: int = 0) -> Any:
    return record("demo.predictions", prediction(i, event_time_ms=event_time_ms), offset=100 + i, partition=partition)


def lab(i: int, label_time_ms: int, partition: int = 0) -> Any:
    value = {**label(i), "label_time_ms": label_time_ms}
    return record("demo.feedback", value, offset=i, partition=partition, raw=f"label-{i}".encode())


T = 1_700_000_000_000


def test_a_label_older_than_every_kept_prediction_is_dead_lettered_at_once() -> None:
    lrn = learner()
    lrn.prediction_gap(0, first=10, last=19, log_start=20)
    lrn([pred(20, T + 60_000)])  # the first kept prediction dates the gap
    result = lrn([lab(15, T + 1_000)])
    (dead,) = result.dead
    assert dead.reason == PREDICTION_DELETED and dead.value == b"label-15"
    assert "predictions 10..19 of demo.predictions:0 were deleted by retention" in dead.message
    assert not lrn.state.pending_labels
    # A label of the kept range, or of another partition, waits for its prediction as usual.
    assert lrn([lab(21, T + 61_000), lab(16, T + 1_000, partition=1)]).dead == []
    assert set(lrn.state.pending_labels) == {"e21", "e16"}
    assert len(lrn([pred(21, T + 60_001)]).outputs) == 1


def test_labels_waiting_when_the_gap_is_dated_are_dead_lettered_then() -> None:
    lrn = learner()
    lrn.prediction_gap(0, first=0, last=9, log_start=10)
    assert lrn([lab(3, T + 1_000), lab(30, T + 90_000)]).dead == []  # no kept prediction read yet
    result = lrn([pred(12, T + 60_000)])
    assert [d.reason for d in result.dead] == [PREDICTION_DELETED]
    assert list(lrn.state.pending_labels) == ["e30"]


def test_only_the_champion_dead_letters_orphaned_labels() -> None:
    lrn = learner(champion=False)
    lrn.prediction_gap(0, first=0, last=9, log_start=10)
    lrn([pred(12, T + 60_000)])
    assert lrn([lab(3, T + 1_000)]).dead == [] and not lrn.state.pending_labels


def test_a_late_label_names_the_gap_of_its_partition() -> None:
    lrn = learner()
    lrn.prediction_gap(0, first=0, last=9, log_start=10)
    lrn([lab(3, T)])
    result = lrn([lab(4, T + 2 * 3_600_000)])  # moves the label watermark past the lateness
    (dead,) = result.dead
    assert dead.reason == "late_label" and "deleted by retention" in dead.message


def test_checkpoints_from_before_prediction_gaps_restore() -> None:
    state = LearnerState(ModelState.fresh("demo", demo_contract().champion))
    del state.__dict__["prediction_gaps"]
    restored = pickle.loads(pickle.dumps(state))
    assert restored.prediction_gaps == {}
    state = LearnerState(
        ModelState.fresh("demo", demo_contract().champion), prediction_gaps={1: PredictionGap(0, 4, 5)}
    )
    assert pickle.loads(pickle.dumps(state)).prediction_gaps[1].last == 4
    state.forget_inputs()
    assert state.prediction_gaps == {}


# -- retention gaps in the stream loop ------------------------------------------------------------------------------


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def error(self) -> None:
        return None


class FakeConsumer:
    """Positions, cached low watermarks and committed offsets, as the loop asks for them."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, int], int] = {}
        self.low: dict[tuple[str, int], int] = {}
        self.committed_at: dict[tuple[str, int], int] = {}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.positions.get((p.topic, p.partition), -1001)) for p in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False, timeout: float = 0) -> tuple[int, int]:
        return self.low.get((tp.topic, tp.partition), 0), 1_000

    def committed(self, partitions: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.committed_at.get((p.topic, p.partition), OFFSET_INVALID))
            for p in partitions
        ]


def loop_with(consumer: FakeConsumer, gaps: list[OffsetGap]) -> StreamLoop:
    return StreamLoop(
        service="test",
        consumer=consumer,  # type: ignore[arg-type]
        producer=None,  # type: ignore[arg-type]
        serdes=None,  # type: ignore[arg-type]
        topics=["s.events"],
        handler=lambda records: None,  # type: ignore[arg-type,return-value]
        on_gap=gaps.append,
    )


def read(loop: StreamLoop, consumer: FakeConsumer, partition: int, offsets: list[int]) -> None:
    """One batch of ``offsets`` from ``partition``: the consumer's position moves past the last."""
    consumer.positions[("s.events", partition)] = offsets[-1] + 1
    loop._accept([FakeMessage("s.events", partition, o) for o in offsets])  # type: ignore[misc]


def test_a_committed_offset_below_the_log_start_is_a_gap() -> None:
    consumer, gaps = FakeConsumer(), list[OffsetGap]()
    loop = loop_with(consumer, gaps)
    consumer.committed_at[("s.events", 0)] = 5
    consumer.low[("s.events", 0)] = 12
    loop._assigned(consumer, [TopicPartition("s.events", 0, OFFSET_INVALID)])  # type: ignore[arg-type]
    read(loop, consumer, 0, [12, 13])
    letters = loop.gaps.take()
    assert gaps == [OffsetGap("s.events", 0, 5, 11, 12)]
    meta = read_dlq_headers(letters[0].dlq_headers())
    assert meta["reason"] == RETENTION_GAP and RETENTION_GAP in NOT_REPLAYABLE
    assert (meta["gap.first_offset"], meta["gap.last_offset"], meta["gap.count"]) == ("5", "11", "7")
    assert letters[0].value is None and letters[0].dlq_topic == "s.dlq"
    read(loop, consumer, 0, [14])  # and only once
    assert loop.gaps.take() == [] and loop.gaps.total == 1


def test_a_gap_in_the_middle_of_a_batch_is_found_exactly() -> None:
    consumer, gaps = FakeConsumer(), list[OffsetGap]()
    loop = loop_with(consumer, gaps)
    loop._assigned(consumer, [TopicPartition("s.events", 1, 40)])  # type: ignore[arg-type]  # placed by on_assign
    consumer.low[("s.events", 1)] = 50
    read(loop, consumer, 1, [40, 41, 50, 51])  # 40 and 41 were fetched before the log start moved
    loop.gaps.take()
    assert gaps == [OffsetGap("s.events", 1, 42, 49, 50)]


@pytest.mark.parametrize(
    "assigned, committed, low, offsets",
    [
        (OFFSET_INVALID, None, 0, [0, 1]),  # a new group reads from the beginning
        (OFFSET_INVALID, None, 30, [30, 31]),  # ... even when retention took the start: nothing was its to lose
        (OFFSET_BEGINNING, None, 30, [30]),  # placed at the beginning on purpose
        (OFFSET_INVALID, 10, 0, [11, 13, 14]),  # offsets skipped by transaction markers: nothing deleted
        (20, None, 20, [20, 21]),  # the log start is where it should go on from
    ],
)
def test_no_gap_without_deleted_records(assigned: int, committed: int | None, low: int, offsets: list[int]) -> None:
    consumer, gaps = FakeConsumer(), list[OffsetGap]()
    loop = loop_with(consumer, gaps)
    if committed is not None:
        consumer.committed_at[("s.events", 0)] = committed
    consumer.low[("s.events", 0)] = low
    loop._assigned(consumer, [TopicPartition("s.events", 0, assigned)])  # type: ignore[arg-type]
    read(loop, consumer, 0, offsets)
    assert loop.gaps.take() == [] and gaps == []


def test_a_consumer_that_falls_behind_retention_while_running_reports_the_gap() -> None:
    consumer, gaps = FakeConsumer(), list[OffsetGap]()
    loop = loop_with(consumer, gaps)
    loop._assigned(consumer, [TopicPartition("s.events", 0, 0)])  # type: ignore[arg-type]
    read(loop, consumer, 0, [0, 1, 2])
    consumer.low[("s.events", 0)] = 100
    read(loop, consumer, 0, [100])
    loop.gaps.take()
    assert [(g.first, g.last, g.count) for g in gaps] == [(3, 99, 97)]
