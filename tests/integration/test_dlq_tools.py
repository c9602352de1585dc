"""DLQ inspection and replay against the real broker: fields, limits, exact replay, idempotent re-runs."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from eddy.contracts.checks import Violation
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.dlq_tools import (
    REPLAYED_FROM_HEADER,
    DlqEntry,
    DlqError,
    format_entry,
    format_replay,
    read_dlq,
    replay_dlq,
    replay_group,
)
from eddy.kafka.client import admin_client, producer_config
from eddy.kafka.producer import ConfirmedProducer, Headers
from eddy.runtime.dlq import DeadLetter

from tests.helpers import create_topics, read_topic

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
AVRO_LIKE = b"\x00\x00\x00\x00\x01\x02e1\xff\xfe"  # magic byte, schema id, body: not text
ORIGINAL_HEADERS: Headers = [("eddy.ingested_at_ms", b"1700000000123"), ("trace-id", b"\xff\x00abc")]


def letter(
    topic: str,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    stage: str = "validation",
    error_class: str = "Rejected",
    message: str = "",
    violations: tuple[Violation, ...] = (),
    headers: Headers | None = None,
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        partition=offset % 4,
        offset=offset,
        key=key,
        value=value,
        headers=list(ORIGINAL_HEADERS) if headers is None else headers,
        timestamp_ms=T0 + offset,
        stage=stage,
        reason=reason,
        error_class=error_class,
        message=message or reason,
        violations=violations,
    )


def dead_letter(settings: Settings, letters: list[DeadLetter], first_ms: int = T0 + 10_000) -> None:
    """Write ``letters`` to the stream's DLQ as the loop does, dead-lettered 1 ms apart in this order."""
    (stream,) = settings.streams
    producer = ConfirmedProducer(producer_config(settings))
    for i, dl in enumerate(letters):
        producer.produce(StreamTopics(stream).dlq, dl.value, dl.key, dl.dlq_headers(first_ms + i), dl.timestamp_ms)
    producer.confirm()


def typical_letters(stream: str) -> list[DeadLetter]:
    """Three replayable dead letters from S.events, one from another stream, one from S.feedback."""
    topics = StreamTopics(stream)
    too_big = Violation("x1", "max", 42.0, "x1=42.0 is above the maximum 10.0")
    return [
        letter(topics.events, 41, b"e1", AVRO_LIKE, "contract:max", message=too_big.message, violations=(too_big,)),
        letter(topics.events, 42, b"p2", b"not avro at all", "undecodable", "deserialize", "SerdeError", "bad magic"),
        letter(topics.events, 43, None, b'{"x": 1}', "contract:allowed", headers=[]),
        letter(f"other{uuid.uuid4().hex[:6]}.events", 7, b"o1", b"other", "contract:max"),
        letter(topics.feedback, 9, b"f1", b"label", "handler_error", "learning", "KeyError", "KeyError: 'label'"),
    ]


def test_read_dlq_parses_every_field_and_stops_at_max(settings: Settings) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    assert read_dlq(settings, stream, timeout_s=10) == []
    letters = typical_letters(stream)
    dead_letter(settings, letters)

    entries = read_dlq(settings, stream, timeout_s=20)
    assert [e.reason for e in entries] == [
        "contract:max",
        "undecodable",
        "contract:allowed",
        "contract:max",
        "handler_error",
    ]
    first = entries[0]
    assert first.topic == f"{stream}.dlq" and first.partition in range(4) and first.offset >= 0
    assert first.timestamp_ms == T0 + 41 and first.dead_lettered_ms == T0 + 10_000
    assert first.key == b"e1" and first.value == AVRO_LIKE
    assert (first.stage, first.error_class, first.error_message) == ("validation", "Rejected", letters[0].message)
    assert (first.source_topic, first.source_partition, first.source_offset) == (f"{stream}.events", 1, 41)
    assert first.violations == [
        {"field": "x1", "rule": "max", "value": 42.0, "message": "x1=42.0 is above the maximum 10.0"}
    ]
    assert first.headers == ORIGINAL_HEADERS
    assert first.value_preview.encoding == "base64" and first.value_preview.size == len(AVRO_LIKE)
    assert entries[1].value_preview.encoding == "text" and entries[1].value_preview.preview == "not avro at all"
    assert entries[1].violations == [] and entries[1].error_class == "SerdeError"
    assert entries[2].key is None and entries[2].headers == []

    doc = json.loads(first.to_json())
    assert doc["source"] == {"topic": f"{stream}.events", "partition": 1, "offset": 41}
    assert doc["key"] == "e1" and doc["value"]["encoding"] == "base64"
    assert doc["headers"][1][1].startswith("base64:")

    assert len(read_dlq(settings, stream, max_records=2, timeout_s=20)) == 2


def test_read_dlq_of_a_missing_topic_is_one_clear_error(settings: Settings) -> None:
    with pytest.raises(DlqError, match=r"no topic 'nosuch\w+\.dlq'"):
        read_dlq(settings, f"nosuch{uuid.uuid4().hex[:8]}", timeout_s=5)


def test_replay_sends_original_bytes_back_once(settings: Settings) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    letters = typical_letters(stream)
    dead_letter(settings, letters)
    positions = {e.key: e.position for e in read_dlq(settings, stream, timeout_s=20)}

    dry = replay_dlq(settings, stream, dry_run=True, timeout_s=20)
    assert (dry.replayed, dry.scanned, dry.committed) == (3, 5, {})
    assert "nothing sent" in format_replay(dry)

    result = replay_dlq(settings, stream, timeout_s=20)
    assert result.caught_up and not result.dry_run and result.group == replay_group(stream)
    assert result.replayed == 3 and result.replayed_by_topic == {topics.events: 3}
    assert result.skipped == 2 and result.skipped_by_reason == {}
    assert set(result.skipped_by_topic) == {topics.feedback, letters[3].topic}
    assert sum(result.committed.values()) == 5

    replayed = read_topic(settings, topics.events, expect=3, timeout_s=20, decode=False)
    assert len(replayed) == 3
    by_key = {m.key(): m for m in replayed}
    assert set(by_key) == {b"e1", b"p2", None}
    e1 = by_key[b"e1"]
    assert e1.value() == AVRO_LIKE
    assert e1.timestamp() == (TIMESTAMP_CREATE_TIME, T0 + 41)
    assert e1.headers() == [*ORIGINAL_HEADERS, (REPLAYED_FROM_HEADER, positions[b"e1"].encode())]
    assert not any(k.startswith("eddy.dlq.") for k, _ in e1.headers())
    assert by_key[b"p2"].value() == b"not avro at all"
    assert by_key[None].headers() == [(REPLAYED_FROM_HEADER, positions[None].encode())]

    # Safe to run twice: nothing new in the DLQ, nothing sent.
    again = replay_dlq(settings, stream, timeout_s=20)
    assert (again.scanned, again.replayed, again.skipped) == (0, 0, 0) and again.caught_up

    # Only what arrived since: a dry run shows it without sending, the real run sends it once.
    dead_letter(settings, [letter(topics.events, 50, b"e50", b"late", "contract:min")], first_ms=T0 + 20_000)
    dry = replay_dlq(settings, stream, dry_run=True, timeout_s=20)
    assert (dry.scanned, dry.replayed) == (1, 1)
    assert len(read_topic(settings, topics.events, timeout_s=10, decode=False, quiet_s=1.0)) == 3
    last = replay_dlq(settings, stream, timeout_s=20)
    assert (last.scanned, last.replayed) == (1, 1)
    after = read_topic(settings, topics.events, timeout_s=10, decode=False, quiet_s=1.0)
    assert sorted(m.key() or b"" for m in after) == [b"", b"e1", b"e50", b"p2"]


def test_replay_only_some_reasons(settings: Settings) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    dead_letter(settings, typical_letters(stream))

    # A reason family matches by prefix; nothing is sent or committed in a dry run.
    dry = replay_dlq(settings, stream, only_reasons=["contract"], dry_run=True, timeout_s=20)
    assert dry.replayed == 2 and dry.skipped_by_reason == {"undecodable": 1}

    result = replay_dlq(settings, stream, only_reasons={"undecodable"}, timeout_s=20)
    assert result.replayed == 1 and result.replayed_by_topic == {topics.events: 1}
    assert result.skipped_by_reason == {"contract:max": 1, "contract:allowed": 1}
    assert sum(result.skipped_by_topic.values()) == 2
    (only,) = read_topic(settings, topics.events, expect=1, timeout_s=20, decode=False)
    assert only.key() == b"p2" and only.value() == b"not avro at all"


def test_replay_to_a_raw_topic_creates_it_and_other_sources_on_request(settings: Settings) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    raw = f"{stream}.raw"
    dead_letter(
        settings,
        [letter(raw, 3, b"r3", b"raw bytes", "undecodable"), letter(topics.feedback, 4, b"f4", b"fb", "handler_error")],
    )
    result = replay_dlq(settings, stream, timeout_s=20)
    assert result.replayed_by_topic == {raw: 1} and result.skipped_by_topic == {topics.feedback: 1}
    (msg,) = read_topic(settings, raw, expect=1, timeout_s=20, decode=False)
    assert msg.value() == b"raw bytes"
    # There with eddy's partition count (the replay creates it if missing), not one the broker auto-created.
    assert len(admin_client(settings).list_topics(timeout=10).topics[raw].partitions) == settings.partitions

    dead_letter(settings, [letter(topics.feedback, 5, b"f5", b"fb", "handler_error")], first_ms=T0 + 30_000)
    fb = replay_dlq(settings, stream, source_topics=[topics.feedback], timeout_s=20)
    assert fb.replayed_by_topic == {topics.feedback: 1}


def test_format_entry_puts_the_reason_first() -> None:
    topics = StreamTopics("demo")
    dl = letter(topics.events, 41, b"e1", AVRO_LIKE, "contract:max", message="x1=42.0 is above the maximum 10.0")
    entry = DlqEntry.from_record("demo.dlq", 2, 7, T0, b"e1", AVRO_LIKE, dl.dlq_headers(T0 + 1000))
    text = format_entry(entry)
    first, second = text.split("\n")
    assert first.startswith("contract:max  source demo.events[1]@41  -> demo.dlq:2:7  2023-11-14T22:13:21.000Z")
    assert "key=e1" in first and "stage=validation" in first
    assert second.strip().startswith("x1=42.0 is above the maximum 10.0")  # "Rejected" adds nothing
    assert f"value {len(AVRO_LIKE)} B, base64: " in second

    crash = letter(topics.events, 1, None, b"line\nbreak", "handler_error", "inference", "KeyError", "boom")
    entry = DlqEntry.from_record("demo.dlq", 0, 0, None, None, b"line\nbreak", crash.dlq_headers(T0))
    first, second = format_entry(entry).split("\n")
    assert "key=-" in first
    assert "KeyError: boom" in second and "value 10 B: line\\nbreak" in second

    long_text = ("x" * 500).encode()
    entry = DlqEntry.from_record("demo.dlq", 0, 1, None, b"k", long_text, [])
    assert entry.reason == "" and entry.value_preview.truncated and len(entry.value_preview.preview) == 200
    assert format_entry(entry).startswith("(no reason)  source ?  -> demo.dlq:0:1")
    assert len(format_entry(entry).splitlines()) == 2
