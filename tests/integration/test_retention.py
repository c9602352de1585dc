"""Retention and compaction at the edges, on Apache Kafka.

Tansu has no retention (it never deletes a record, and panics on DeleteRecords), so only topic
creation runs there. On Kafka the log start is moved with ``AdminClient.delete_records``, which
advances it exactly as retention does. Each case ends in a result or a dead letter with a reason:

- a consumer whose committed offset fell off the log: the skipped range is a ``retention_gap`` dead letter;
- a learner restarted from a checkpoint whose offsets are gone: the same, and it learns on from the log start;
- a label whose prediction was deleted: dead-lettered as ``prediction_deleted``, not left waiting.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from eddy.core.settings import Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import admin_client, consumer_config, producer_config, topic_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime.dlq import PREDICTION_DELETED, RETENTION_GAP, read_dlq_headers
from eddy.runtime.loop import BatchResult, InRecord, StreamLoop
from prometheus_client import REGISTRY

from tests.helpers import ValueWriter, create_topics, read_topic, serdes_for, service, wait_until
from tests.records import event, prediction

pytestmark = pytest.mark.integration


@pytest.fixture()
def kafka(broker_kind: str, settings: Settings) -> Settings:
    if broker_kind == "tansu":
        pytest.skip("Tansu has no retention: it never deletes records (and panics on DeleteRecords)")
    return settings


def test_topics_are_created_with_their_family_policy(broker_kind: str, settings: Settings) -> None:
    """Every topic is created with its family's configs; Tansu takes them and ignores them."""
    (stream,) = settings.streams
    create_topics(settings)
    topics = [*StreamTopics(stream).all(), *PLATFORM_TOPICS]
    admin = admin_client(settings)
    assert set(topics) <= set(admin.list_topics(timeout=10).topics)
    if broker_kind == "tansu":
        return
    # On an external broker the platform topics may predate this code; the session's own broker made them with it.
    wanted = topics if broker_kind == "kafka" else [t for t in topics if not t.startswith("eddy.")]
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in wanted])
    for resource, future in futures.items():
        configs = {name: entry.value for name, entry in future.result().items()}
        for name, value in topic_config(settings, resource.name).items():
            assert configs[name] == value, (resource.name, name)
    assert topic_config(settings, StreamTopics(stream).models)["cleanup.policy"] == "compact"


def delete_up_to(settings: Settings, topic: str, offsets: dict[int, int]) -> None:
    """Move the log start of each partition to ``offsets[partition]``, as retention would."""
    admin: AdminClient = admin_client(settings)
    futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in offsets.items()], operation_timeout=30)
    for future in futures.values():
        future.result()


def high_watermarks(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, "watermarks"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def gap_letters(settings: Settings, expect: int, reason: str = RETENTION_GAP) -> list[dict[str, str]]:
    (stream,) = settings.streams
    letters = read_topic(settings, StreamTopics(stream).dlq, decode=False, timeout_s=30, quiet_s=3)
    metas = [read_dlq_headers(m.headers()) for m in letters]
    found = [m for m in metas if m["reason"] == reason]
    assert len(found) >= expect, metas
    return found


def test_a_committed_offset_that_fell_off_the_log_is_a_dead_letter_gap(kafka: Settings) -> None:
    """The group's committed offset is below the log start: the loop goes on from the log start and says so."""
    settings = kafka
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    writer = ValueWriter(settings, topics.events)
    writer.send([event(i, event_time_ms=int(time.time() * 1000)) for i in range(40)])
    ends = high_watermarks(settings, topics.events)
    group = f"it-retention-{stream}"
    # The group had read half of each partition before it stopped.
    committed = {p: end // 2 for p, end in ends.items()}
    probe = Consumer(consumer_config(settings, group))
    probe.commit(offsets=[TopicPartition(topics.events, p, o) for p, o in committed.items()], asynchronous=False)
    probe.close()
    # While it was away, retention deleted everything it had not read, and a little more.
    log_start = {p: min(end, committed[p] + 3) for p, end in ends.items()}
    delete_up_to(settings, topics.events, log_start)

    seen: list[tuple[int, int]] = []

    def handler(records: list[InRecord]) -> BatchResult:
        seen.extend((r.partition, r.offset) for r in records)
        return BatchResult()

    lost_before = records_lost(topics.events)
    loop = StreamLoop(
        service="retention-test",
        consumer=Consumer(consumer_config(settings, group)),
        producer=ConfirmedProducer(producer_config(settings)),
        serdes=serdes_for(settings),
        topics=[topics.events],
        handler=handler,  # type: ignore[arg-type]
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        expected = sum(ends[p] - log_start[p] for p in ends)
        wait_until(lambda: len(seen) >= expected, 30, what="the records after the log start")
        letters = gap_letters(settings, expect=sum(1 for p in ends if log_start[p] > committed[p]))
    finally:
        stop.set()
        thread.join(15)
    # Exactly the kept records were handled, each once, from the log start on.
    assert sorted(seen) == sorted((p, o) for p in ends for o in range(log_start[p], ends[p]))
    by_partition = {int(m["source.partition"]): m for m in letters}
    for p in ends:
        if log_start[p] == committed[p]:
            continue
        meta = by_partition[p]
        assert meta["source.topic"] == topics.events and meta["stage"] == "retention-test"
        assert int(meta["gap.first_offset"]) == committed[p] and int(meta["gap.last_offset"]) == log_start[p] - 1
        assert int(meta["gap.count"]) == log_start[p] - committed[p]
        assert "deleted by retention" in meta["error.message"]
    lost = records_lost(topics.events) - lost_before
    assert lost == sum(log_start[p] - committed[p] for p in ends)
    assert loop.gaps.total == len(by_partition)


def records_lost(topic: str) -> float:
    value = REGISTRY.get_sample_value("eddy_records_lost_total", {"service": "retention-test", "topic": topic})
    return value or 0.0


def timed_prediction(stream: str, i: int, event_time_ms: int) -> dict[str, Any]:
    return prediction(i, stream=stream, event_time_ms=event_time_ms, predicted_at_ms=event_time_ms + 5)


def label_at(i: int, label_time_ms: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "label": i % 2 == 0, "label_time_ms": label_time_ms, "source": "test"}


def labeled(settings: Settings, topic: str) -> set[str]:
    return {v["event_id"] for v in read_topic(settings, topic, timeout_s=20, quiet_s=2)}


def learned(url: str) -> int:
    health = httpx.get(f"{url}/healthz", timeout=5).json()
    return sum(health.get("learned", {}).values())


def test_a_learner_whose_checkpoint_offsets_are_gone_records_the_gap_and_dead_letters_orphaned_labels(
    kafka: Settings, tmp_path: Path
) -> None:
    """Predictions after the learner's checkpoint are deleted while it is down.

    On restart the lost range of each predictions partition is a ``retention_gap`` dead letter, the labels
    whose predictions went with it are ``prediction_deleted`` dead letters, and every label whose
    prediction was kept is learned, from the log start on.
    """
    settings = kafka
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    predictions = ValueWriter(settings, topics.predictions)
    feedback = ValueWriter(settings, topics.feedback)
    start = int(time.time() * 1000) - 600_000
    env = {"EDDY_CHECKPOINT_INTERVAL_S": "0.5"}

    # 1. Forty events learned; the learner stops (and checkpoints).
    first = range(40)
    predictions.send([timed_prediction(stream, i, start + i) for i in first])
    feedback.send([label_at(i, start + 1000 + i) for i in first])
    with service("learning", settings, tmp_path, **env) as (proc, url, _):
        wait_until(lambda: learned(url) == 40, 60, what="the first 40 labels learned")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # 2. While it is down: ten predictions, then retention deletes them; forty more are kept, a minute later.
    lost = range(40, 50)
    predictions.send([timed_prediction(stream, i, start + 100_000 + i) for i in lost])
    delete_up_to(settings, topics.predictions, high_watermarks(settings, topics.predictions))
    kept = range(50, 90)
    predictions.send([timed_prediction(stream, i, start + 200_000 + i) for i in kept])
    # Labels for all fifty: those of the lost ten came before any kept prediction's event.
    feedback.send([label_at(i, start + 101_000 + i) for i in lost] + [label_at(i, start + 201_000 + i) for i in kept])

    # 3. Restarted: it records the gap, dead-letters the ten orphaned labels and learns the forty others.
    with service("learning", settings, tmp_path, **env) as (proc, url, log):
        wait_until(lambda: learned(url) == 80, 60, what="the kept labels learned")
        gaps = [g for g in gap_letters(settings, expect=1) if g["source.topic"] == topics.predictions]
        orphans = gap_letters(settings, expect=len(lost), reason=PREDICTION_DELETED)
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert sum(int(g["gap.count"]) for g in gaps) == len(lost)
    assert all(g["stage"] == "learning" for g in gaps)
    assert health["retention_gaps_total"] == len(gaps)
    assert sorted(int(read_value_key(o)) for o in orphans) == list(lost)
    assert all("deleted by retention" in o["error.message"] for o in orphans)
    assert labeled(settings, topics.labeled) == {f"e{i}" for i in [*first, *kept]}
    assert "retention gap" in log.read_text()


def read_value_key(meta: dict[str, str]) -> str:
    """The event number in a label's dead-letter message ("no prediction for e42: ...")."""
    return meta["error.message"].split("no prediction for e", 1)[1].split(":", 1)[0]
