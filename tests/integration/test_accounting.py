"""Every record is accounted for: 20,000 records, 30 % broken in varied ways, through the real validation process.

The validation service runs as its own process against the real broker and
registry. A seeded 30 % of the input is broken: Avro of a writer schema the
reader cannot resolve, a missing required feature, a value out of range, an
unknown category, truncated Avro, random bytes, empty values (``b""`` and
``None``) and a few values of about 2 MB. Afterwards ``S.validated`` holds
exactly the valid events, ``S.dlq`` exactly the rest with their reasons and
source positions, and the service is the same process it was at the start,
with no traceback in its log.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema
from eddy.avro.serde import registry_client
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import consumer_config, producer_config
from eddy.runtime.dlq import read_dlq_headers
from eddy.services.validation.fastlane import NATIVE

from tests.helpers import create_topics, serdes_for, service

pytestmark = pytest.mark.integration

TOTAL = 20_000
BROKEN_SHARE = 0.30
SEED = 20_240_611
# A few huge values, not an even share: 750 values of 2 MB would put 3 GB through the in-memory broker.
HUGE_COUNT = 6
HUGE_BYTES = 2 * 1024 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
PRODUCE_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 180.0
REGIONS = (None, "north", "south", "east", "west")


VALID = "valid"
# kind -> (reason, stage, field named by the violations header or None)
EXPECTED: dict[str, tuple[str, str, str | None]] = {
    "wrong_type": ("undecodable", "deserialize", None),
    "missing_required": ("contract:required", "validation", "x1"),
    "out_of_range": ("contract:max", "validation", "x2"),
    "unknown_category": ("contract:allowed", "validation", "region"),
    "truncated": ("undecodable", "deserialize", None),
    "random_bytes": ("undecodable", "deserialize", None),
    "empty": ("undecodable", "deserialize", None),
    "huge": ("undecodable", "deserialize", None),
}

# The decoder's error for the kinds that can fail in one way only.
KNOWN_DETAIL = {"wrong_type": "SchemaResolutionError", "empty": "empty value"}


@dataclass(frozen=True)
class Planned:
    """One input record: what it is, and exactly what was sent."""

    index: int
    kind: str
    key: bytes
    value: bytes | None
    event_id: str | None


@dataclass(frozen=True)
class Readback:
    validated: list[dict[str, Any]]
    dlq: list[Message]


# -- the service process ----------------------------------------------------------------------------------------


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


# -- the input --------------------------------------------------------------------------------------------------


def wrong_type_schema() -> dict[str, Any]:
    """The demo schema with x0 as a plain string: the stream's reader schema cannot resolve it."""
    schema: dict[str, Any] = json.loads((REPO_ROOT / "schemas/streams/demo.avsc").read_text())
    schema["fields"] = [{"name": "x0", "type": "string"} if f["name"] == "x0" else f for f in schema["fields"]]
    return schema


def plan_inputs(settings: Settings, huge_count: int) -> list[Planned]:
    (stream,) = settings.streams
    rng = random.Random(SEED)
    serde = serdes_for(settings).for_topic(StreamTopics(stream).events)
    # A writer schema registered under another subject, framed in the Confluent wire format by hand.
    bad_schema = wrong_type_schema()
    bad_id = registry_client(settings).register_schema(
        f"{stream}-wrong-type-value", Schema(json.dumps(bad_schema), "AVRO")
    )
    bad_parsed = fastavro.parse_schema(bad_schema, named_schemas={})

    broken = rng.sample(range(TOTAL), round(TOTAL * BROKEN_SHARE))
    others = [k for k in EXPECTED if k != "huge"]
    kinds = ["huge"] * huge_count + [others[i % len(others)] for i in range(len(broken) - huge_count)]
    rng.shuffle(kinds)
    kind_of = dict(zip(broken, kinds, strict=True))

    def event(i: int, **overrides: Any) -> dict[str, Any]:
        base = {
            "event_id": f"e{i}",
            "event_time_ms": 1_700_000_000_000 + i,
            "x0": round(rng.uniform(0, 10), 3),
            "x1": round(rng.uniform(0, 10), 3),
            "x2": round(rng.uniform(0, 10), 3),
            "region": rng.choice(REGIONS),
        }
        return {**base, **overrides}

    planned = []
    empties = 0
    for i in range(TOTAL):
        kind = kind_of.get(i, VALID)
        event_id: str | None = f"e{i}"
        value: bytes | None
        if kind == VALID:
            value = serde.encode(event(i))
        elif kind == "wrong_type":
            body = io.BytesIO()
            fastavro.schemaless_writer(body, bad_parsed, event(i, x0=rng.choice(["high", "low", "7.5", ""])))
            value = struct.pack(">bI", 0, bad_id) + body.getvalue()
            event_id = None
        elif kind == "missing_required":
            value = serde.encode(event(i, x1=None))
        elif kind == "out_of_range":
            value = serde.encode(event(i, x2=42.0))
        elif kind == "unknown_category":
            value = serde.encode(event(i, region="mars"))
        elif kind == "truncated":
            whole = serde.encode(event(i))
            value = whole[: rng.randint(1, len(whole) - 1)]
            event_id = None
        elif kind == "random_bytes":
            value = rng.randbytes(rng.randint(1, 300))
            if rng.random() < 0.25:  # looks like the wire format, with a schema id the registry never issued
                value = struct.pack(">bI", 0, rng.randint(2**30, 2**31 - 1)) + value
            event_id = None
        elif kind == "empty":
            value = b"" if empties % 2 == 0 else None
            empties += 1
            event_id = None
        else:
            value = rng.randbytes(HUGE_BYTES)
            event_id = None
        planned.append(Planned(i, kind, f"e{i}".encode(), value, event_id))
    return planned


def produce_all(settings: Settings, topic: str, planned: list[Planned]) -> dict[bytes, tuple[int, int]]:
    """Send every planned record; returns where each landed (partition, offset), by key."""
    producer = Producer(producer_config(settings, **{"message.max.bytes": MAX_MESSAGE_BYTES}))
    landed: dict[bytes, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err.str())
        else:
            landed[msg.key() or b""] = (msg.partition() or 0, msg.offset() or 0)

    for p in planned:
        while True:
            try:
                producer.produce(topic, p.value, p.key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(PRODUCE_TIMEOUT_S)
    assert remaining == 0 and not errors, f"{remaining} unacknowledged, errors: {errors[:3]}"
    assert len(landed) == len(planned)
    return landed


# -- reading back -----------------------------------------------------------------------------------------------


def read_back(
    settings: Settings, proc: subprocess.Popen[bytes], log: Path, expect_validated: int, expect_dlq: int
) -> Readback:
    """Everything in S.validated and S.dlq: until both reach the expected counts, then 3 s more to catch extras."""
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    serde = serdes_for(settings).for_topic(topics.validated)
    consumer = Consumer(consumer_config(settings, f"test-accounting-{uuid.uuid4().hex[:8]}"))
    assignment = []
    for topic in (topics.validated, topics.dlq):
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)]
    consumer.assign(assignment)
    out = Readback([], [])
    deadline = time.monotonic() + READ_TIMEOUT_S
    settle_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if settle_until is not None and now > settle_until:
                break
            if now > deadline:
                raise AssertionError(
                    f"timed out after {READ_TIMEOUT_S:.0f}s: {len(out.validated)}/{expect_validated} validated, "
                    f"{len(out.dlq)}/{expect_dlq} dead letters\n{log_tail(log)}"
                )
            if proc.poll() is not None:
                raise AssertionError(f"the validation service exited with {proc.returncode}\n{log_tail(log)}")
            for msg in consumer.consume(1000, 0.2):
                if msg.error():
                    continue
                if msg.topic() == topics.validated:
                    out.validated.append(serde.decode(msg.value()))
                else:
                    out.dlq.append(msg)
            if settle_until is None and len(out.validated) >= expect_validated and len(out.dlq) >= expect_dlq:
                settle_until = time.monotonic() + 3.0
    finally:
        consumer.close()
    return out


def detail(headers: dict[str, str]) -> str:
    """What exactly went wrong, in a few words: the violated fields, or the decoder's error."""
    if "violations" in headers:
        return "violations: " + ", ".join(v["field"] for v in json.loads(headers["violations"]))
    message = headers["error.message"]
    match = re.match(r"cannot decode \S+ value: (\w+)", message)
    return match.group(1) if match else message.split("(")[0].strip()[:40]


def reason_table(rows: Counter[tuple[str, str, str]], planned: Counter[str]) -> str:
    lines = ["| kind | sent | eddy.dlq.reason | detail | dead letters |", "|---|---:|---|---|---:|"]
    for (kind, reason, what), count in sorted(rows.items()):
        lines.append(f"| {kind} | {planned[kind]} | {reason} | {what} | {count} |")
    return "\n".join(lines)


# -- the test ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "huge_count",
    [
        pytest.param(HUGE_COUNT, id="with-huge-values"),
        pytest.param(0, id="without-huge-values"),
    ],
)
def test_every_record_is_validated_or_dead_lettered_exactly_once(
    settings: Settings, tmp_path: Path, huge_count: int
) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings, events_max_bytes=MAX_MESSAGE_BYTES)
    planned = plan_inputs(settings, huge_count)
    by_key = {p.key: p for p in planned}
    kinds = Counter(p.kind for p in planned)
    n_valid = kinds[VALID]
    n_broken = TOTAL - n_valid
    assert n_broken == round(TOTAL * BROKEN_SHARE)
    assert set(kinds) == {VALID, *EXPECTED} - ({"huge"} if huge_count == 0 else set())

    with service("validation", settings, tmp_path) as (proc, url, log):
        pid = proc.pid
        started = time.monotonic()
        landed = produce_all(settings, topics.events, planned)
        back = read_back(settings, proc, log, n_valid, n_broken)
        elapsed = time.monotonic() - started

        # The same process served the whole run: never died, never restarted, never logged a traceback.
        assert proc.poll() is None and proc.pid == pid
        os.kill(pid, 0)
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        assert health["status"] == "ok", health
        # Past the reference profile, valid records went through the native fast lane, as in production.
        assert health["fast_lane"] == ([stream] if NATIVE else []), health
        if NATIVE:
            assert health["forwarded_total"] > n_valid // 2, health
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, log_tail(log)
        assert '"level": "error"' not in text and '"level": "critical"' not in text, log_tail(log)
        assert text.count('"msg": "consuming"') == 1, "the consumer loop started more than once"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_tail(log)

    # Exact accounting: nothing lost, nothing duplicated.
    assert len(back.validated) + len(back.dlq) == TOTAL
    assert len(back.validated) == n_valid
    assert len(back.dlq) == n_broken
    valid_ids = sorted(p.event_id for p in planned if p.kind == VALID and p.event_id is not None)
    assert sorted(v["event_id"] for v in back.validated) == valid_ids

    # Every dead letter: its original key and bytes, where it came from, and a reason that fits the breakage.
    reasons: Counter[tuple[str, str, str]] = Counter()
    sources = set()
    for msg in back.dlq:
        key = msg.key() or b""
        assert key in by_key, f"dead letter with an unknown key {key!r}"
        p = by_key[key]
        headers = read_dlq_headers(msg.headers())
        assert headers.get("reason"), f"dead letter {key!r} has no eddy.dlq.reason header: {headers}"
        reasons[(p.kind, headers["reason"], detail(headers))] += 1
        assert headers["source.topic"] == topics.events
        assert (int(headers["source.partition"]), int(headers["source.offset"])) == landed[key]
        sources.add((headers["source.partition"], headers["source.offset"]))
        assert p.kind != VALID, f"valid record {key!r} was dead-lettered: {headers}"
        reason, stage, field = EXPECTED[p.kind]
        assert (headers["reason"], headers["stage"]) == (reason, stage), (p.kind, headers)
        assert headers["error.message"] and headers["error.class"]
        if p.kind in KNOWN_DETAIL:
            assert detail(headers) == KNOWN_DETAIL[p.kind], (p.kind, headers["error.message"])
        if field is not None:
            assert [v["field"] for v in json.loads(headers["violations"])] == [field], headers
        if p.kind != "huge":
            assert (msg.value() or b"") == (p.value or b""), f"{p.kind} {key!r}: the DLQ must keep the original bytes"
    assert len(sources) == n_broken, "a source record was dead-lettered twice"

    sent_by_kind = Counter(p.kind for p in planned)
    print(f"\n{TOTAL} records ({n_valid} valid, {n_broken} broken) accounted for in {elapsed:.1f}s")
    print(reason_table(reasons, sent_by_kind))
    for kind, count in sent_by_kind.items():
        if kind != VALID:
            assert sum(n for (k, _, _), n in reasons.items() if k == kind) == count, kind
