"""Input fuzzing of the validation service: hostile records on ``S.events``, each validated or dead-lettered once.

The real validation process runs against the test broker, its reference profile cut to 20 records so
that the native fast lane (``shared/eddy/native/avro_checker.c``) is on for the hostile part. Straight to
``S.events`` go, seeded and bounded: arbitrary bytes, bytes behind the stream's own schema header,
wrong magic bytes, unknown and foreign schema ids, Avro written byte by byte with hostile strings
(invisible, bidirectional, whitespace-only and invalid UTF-8 ids and categories), NaN payloads,
infinities and the edges of the contract's ranges, broken varints, union branches and lengths,
truncations, trailing bytes, forged DLQ headers, and records near and over the record limit (2 MB
values, 600 KB event ids, a 1.2 MB key).

What each record should become comes from the ordinary Python path, in the test: decode it with the
stream's serde, ``check_record`` it. Then every record must be in ``S.validated`` (by event id, the
same bytes) or in ``S.dlq`` (by source position, with that reason and its original bytes, or a
prefix and hash of them when too large), exactly once; and the service must be the same process,
healthy, with nothing logged at error level and no traceback.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import Schema
from eddy.avro.serde import SerdeError, TopicSerde, registry_client
from eddy.contracts.checks import Violation, check_record
from eddy.contracts.stream import StreamContract, load_contract
from eddy.core.limits import MAX_FUTURE_MS
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import producer_config
from eddy.runtime.dlq import MAX_RECORD_BYTES, DeadLetter, fit_dead_letter, read_dlq_headers, record_bytes
from eddy.services.validation.fastlane import NATIVE

from tests.chaos.fuzz_inputs import (
    EDGE_DOUBLES,
    HOSTILE_TEXTS,
    NAN_PATTERNS,
    DeadCopy,
    account_stream,
    avro_string,
    demo_event,
    services,
    wait_committed,
    zigzag,
)
from tests.helpers import create_topics, log_records, serdes_for

SEED = 20_251_124
REFERENCE_SIZE = 20
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
TIME_MS = 1_700_000_000_000
UNDECODABLE = "undecodable"
TOO_LARGE = "too_large"


@dataclass(frozen=True)
class Hostile:
    """One record for ``S.events``: its category, exactly what is sent (key, value, headers), and a name."""

    category: str
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    name: str = ""


class Plan:
    """The records to send, built category by category, each with a unique key."""

    def __init__(self, header: bytes) -> None:
        self.header = header
        self.records: list[Hostile] = []

    def add(self, category: str, value: bytes | None, key: bytes | None = None, **kw: Any) -> None:
        self.records.append(Hostile(category, key or f"k{len(self.records)}".encode(), value, **kw))

    def event(self, category: str, event_id: bytes | None = None, **fields: Any) -> None:
        """A demo event written by hand, its id unique unless given."""
        event_id = event_id if event_id is not None else f"{category}-{len(self.records)}".encode()
        self.add(category, demo_event(self.header, event_id, fields.pop("time_ms", TIME_MS), **fields))


def foreign_schema_ids(settings: Settings, stream: str) -> dict[str, int]:
    """Writer schemas registered under subjects of their own: one the reader cannot resolve, one that is
    not a record, one that adds a field (which resolves: the record is valid, and written anew)."""
    demo: dict[str, Any] = json.loads((REPO_ROOT / "schemas/streams/demo.avsc").read_text())
    wrong_type = {
        **demo,
        "fields": [{"name": "x0", "type": "string"} if f["name"] == "x0" else f for f in demo["fields"]],
    }
    extra = {
        **demo,
        "fields": [*demo["fields"], {"name": "junk", "type": {"type": "array", "items": "null"}, "default": []}],
    }
    client = registry_client(settings)
    schemas = {"wrong_type": wrong_type, "not_a_record": "string", "extra_field": extra}
    return {
        name: client.register_schema(f"{stream}-fuzz-{name}-value", Schema(json.dumps(schema), "AVRO"))
        for name, schema in schemas.items()
    }


def plan_hostile(rng: random.Random, header: bytes, foreign: dict[str, int]) -> list[Hostile]:
    """Every hostile record, category by category, in a seeded order (a few hundred, a few MB in all)."""
    plan = Plan(header)
    valid_body = demo_event(header, b"template", TIME_MS)[5:]
    plan.add("empty", None)
    for _ in range(100):
        plan.add("arbitrary_bytes", rng.randbytes(rng.choice((0, 1, 3, 5, 16, 64, 400))))
    for _ in range(60):
        plan.add("own_header_random_body", header + rng.randbytes(rng.randint(0, 80)))
    for magic in (b"\x01", b"\xff", b"{", b"\x00\x00"):
        plan.add("wrong_magic", magic + header[1:] + valid_body)
    for cut in range(5):
        plan.add("wrong_magic", header[:cut])
    for schema_id in (0, 2**31 - 1, 2**32 - 1, 424_242):
        plan.add("unknown_schema_id", struct.pack(">bI", 0, schema_id) + valid_body)
    plan.add(
        "foreign_schema",
        struct.pack(">bI", 0, foreign["wrong_type"])
        + avro_string(b"e")
        + zigzag(TIME_MS)
        + avro_string(b"high")
        + b"\x00" * 3,
    )
    plan.add("foreign_schema", struct.pack(">bI", 0, foreign["not_a_record"]) + avro_string(b"just a string"))
    for count in (0, 3, 100_000):
        extra_id = f"foreign-extra-{count}".encode()
        items = zigzag(count) + b"\x00" if count else b"\x00"
        plan.add(
            "foreign_schema", struct.pack(">bI", 0, foreign["extra_field"]) + demo_event(b"", extra_id, TIME_MS) + items
        )

    # Valid Avro carrying hostile text: as event ids (whitespace-only ones break the contract), as categories.
    for name, text in HOSTILE_TEXTS.items():
        plan.event("hostile_id", text.encode())
        plan.event("hostile_region", f"region-{name}".encode(), region=text.encode())
    for name, raw in {
        "ff": b"\xff",
        "overlong_nul": b"\xc0\x80",
        "cesu_surrogate": b"\xed\xa0\x80",
        "cut": b"ok\xe2\x82",
    }.items():
        plan.event("invalid_utf8", raw)
        plan.event("invalid_utf8", f"utf8-region-{name}".encode(), region=raw)
    for region in (b"North", b"north\x00", "nor\u200bth".encode(), "north\u0301".encode(), b"north" * 1000):
        plan.event("hostile_region", region=region)

    # Numbers: NaN payloads, infinities, the edges of [0, 10], extreme event times.
    for name, pattern in NAN_PATTERNS.items():
        plan.event("nan_inf", f"nan-{name}".encode(), x=(pattern, 2.0, 3.0))
    for name, number in EDGE_DOUBLES.items():
        for slot in range(3):
            x: list[float | bytes | None] = [1.0, 2.0, 3.0]
            x[slot] = number
            plan.event("edge_numbers", f"edge-{name}-x{slot}".encode(), x=(x[0], x[1], x[2]))
    for time_ms in (0, -1, 1, 2**63 - 1, -(2**63)):
        plan.event("event_time", f"time-{time_ms}".encode(), time_ms=time_ms)
    plan.event("missing", x=(None, None, None))

    # Broken encodings: union branches, varints, lengths, trailing bytes, truncations.
    for name, value in broken_encodings(header, rng).items():
        plan.add("broken_encoding", value, name=name)
    good = demo_event(header, b"truncated", TIME_MS)
    for cut in range(5, len(good)):
        plan.add("truncated", good[:cut], name=f"cut-{cut}")

    # Headers: forged dead-letter headers must not pass for the real ones; a header without a value.
    forged = [("eddy.dlq.reason", b"forged"), ("eddy.dlq.source.offset", b"-7"), ("x-empty", None)]
    plan.add("headers", demo_event(header, b"forged-valid", TIME_MS), headers=forged)
    plan.add("headers", demo_event(header, b"forged-invalid", TIME_MS, x=(11.0, 2.0, 3.0)), headers=forged)

    # Near and over the record limit.
    plan.add("huge", rng.randbytes(2 * 1024 * 1024))
    plan.add("huge", rng.randbytes(850_000), key=b"k-850kb-value-" + b"k" * 200_000)
    plan.add("huge", demo_event(header, b"i" * 600_000, TIME_MS))
    plan.add("huge", demo_event(header, b"huge-region", TIME_MS, region=b"r" * 600_000))
    plan.add("huge", demo_event(header, b"huge-invalid", TIME_MS, x=(99.0, 2.0, 3.0)), key=rng.randbytes(1_200_000))
    records = plan.records
    rng.shuffle(records)
    return records


def broken_encodings(header: bytes, rng: random.Random) -> dict[str, bytes]:
    """A demo event, its bytes broken one way per entry (and one odd but valid encoding); each its own event id."""
    out = {}
    parts: dict[str, Callable[[bytes, bytes, bytes], bytes]] = {
        # (the event id field, the event time field, the rest) -> the value
        "branch_2": lambda i, t, rest: i + t + b"\x04" + rest[1:],
        "branch_minus_1": lambda i, t, rest: i + t + b"\x01" + rest[1:],
        "branch_huge": lambda i, t, rest: i + t + b"\xff" * 9 + b"\x01" + rest[1:],
        "time_overlong_varint": lambda i, t, rest: i + b"\x80" * 10 + b"\x01" + rest,
        "time_endless_varint": lambda i, t, rest: i + b"\xff" * 30,
        "id_negative_length": lambda i, t, rest: zigzag(-5) + i[1:] + t + rest,
        "id_length_2**62": lambda i, t, rest: zigzag(2**62) + i[1:] + t + rest,
        "trailing_zero": lambda i, t, rest: i + t + rest + b"\x00",
        "trailing_garbage": lambda i, t, rest: i + t + rest + rng.randbytes(17),
        "time_non_minimal_varint": lambda i, t, rest: i + b"\x82\x80\x80\x00" + rest,
    }
    for name, build in parts.items():
        event_id = avro_string(f"broken-{name}".encode())
        time_ms = zigzag(TIME_MS)
        rest = demo_event(header, b"", TIME_MS)[5 + len(avro_string(b"")) + len(time_ms) :]
        out[name] = header + build(event_id, time_ms, rest)
    return out


def produce(settings: Settings, topic: str, records: list[Hostile]) -> list[tuple[int, int]]:
    """Send ``records`` in order; where each landed (partition, offset), in order, once all were acknowledged."""
    producer = Producer(producer_config(settings, **{"message.max.bytes": MAX_MESSAGE_BYTES}))
    landed: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(index: int) -> Any:
        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                landed[index] = (msg.partition() or 0, msg.offset() or 0)

        return done

    for index, record in enumerate(records):
        producer.produce(topic, record.value, record.key, headers=record.headers or None, on_delivery=delivered(index))
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:3]
    return [landed[i] for i in range(len(records))]


def expected_outcome(serde: TopicSerde, contract: StreamContract, record: Hostile) -> tuple[str | None, str]:
    """The event id the record decodes to (None: it does not), and the reason it must be dead-lettered for ("": none).

    The ordinary Python path, as validation takes it when the fast lane is not sure: decode, check.
    """
    try:
        value = serde.decode(record.value)
    except SerdeError:
        return None, UNDECODABLE
    # Times Kafka would refuse (over an hour ahead) are dead-lettered; the fuzzed times are far from that edge.
    violations = check_record(value, contract, not_after_ms=int(time.time() * 1000) + MAX_FUTURE_MS)
    event_id = str(value.get("event_id"))
    if violations:
        return event_id, f"contract:{violations[0].rule}"
    # A valid record is sent on keyed by its event id: one that cannot fit the record limit is dead-lettered.
    if record.value is not None and len(record.value) + len(event_id.encode()) > MAX_RECORD_BYTES:
        return event_id, TOO_LARGE
    return event_id, ""


@pytest.mark.integration
def test_every_hostile_event_is_validated_or_dead_lettered_once(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    contract = load_contract(settings.contracts_dir / f"{stream}.yaml")
    create_topics(settings, events_max_bytes=MAX_MESSAGE_BYTES)
    serde = serdes_for(settings).for_topic(topics.events)
    assert isinstance(serde, TopicSerde)
    header = struct.pack(">bI", 0, serde.schema_id)
    rng = random.Random(SEED)
    warmup = [
        Hostile("warmup", f"w{i}".encode(), demo_event(header, f"warmup-{i}".encode(), TIME_MS + i))
        for i in range(2 * REFERENCE_SIZE)
    ]
    hostile = plan_hostile(rng, header, foreign_schema_ids(settings, stream))
    records = warmup + hostile
    expected = [expected_outcome(serde, contract, r) for r in records]
    # Valid records of another writer schema are written anew with the stream's own.
    reencoded = {
        event_id
        for r, (event_id, reason) in zip(records, expected, strict=True)
        if event_id is not None and not reason and not (r.value or b"").startswith(header)
    }

    with services(
        settings, tmp_path, {"validation": {"EDDY_VALIDATION_REFERENCE_SIZE": str(REFERENCE_SIZE)}}
    ) as running:
        proc, url, log = running["validation"]
        pid = proc.pid
        started = time.monotonic()
        # The reference profile first, so that the fast lane is on for everything hostile.
        landed = produce(settings, topics.events, warmup)
        wait_committed(
            settings, f"{settings.group_prefix}-validation", [(topics.events, p, o) for p, o in landed], proc
        )
        landed += produce(settings, topics.events, hostile)
        report = account_stream(settings, {"validation": proc}, reencoded=reencoded)
        elapsed = time.monotonic() - started

        assert proc.poll() is None and proc.pid == pid, log.read_text()[-3000:]
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        assert health["status"] == "ok", health
        if NATIVE:
            assert health["fast_lane"] == [stream] and health["forwarded_total"] > 0, health
        errors = [r for r in log_records(log) if r.get("level") in ("error", "critical") or r.get("exc")]
        text = log.read_text(errors="replace")
        assert not errors and "Traceback" not in text, (errors[:3], text[-3000:])

    assert not report.problems, "\n".join(report.problems[:30])
    assert len(report.events) == len(records), "S.events holds records nobody sent, or lost some"
    validated_serde = serdes_for(settings).for_topic(topics.validated)
    validated = Counter(str(validated_serde.decode(m.value())["event_id"]) for m in report.validated)
    outcomes: Counter[tuple[str, str]] = Counter()
    mismatches = []
    for record, (event_id, reason), (partition, offset) in zip(records, expected, landed, strict=True):
        where = f"{record.category}/{record.name} {topics.events}:{partition}:{offset}"
        letters = report.dead_letters.get((topics.events, partition, offset), [])
        if len(letters) == 1:
            outcome = letters[0].headers.get("reason", "?")
            mismatches += kept_bytes(record, letters[0], where)
        elif not letters and event_id is not None and validated[event_id] == 1:
            outcome = "validated"
        else:
            outcome = f"{len(letters)} dead letters, {validated[event_id] if event_id else 0} validated"
        outcomes[(record.category, outcome)] += 1
        if outcome != (reason or "validated"):
            mismatches.append(f"{where}: expected {reason or 'validated'}, got {outcome} {letters[:1]}")
    assert not mismatches, "\n".join(mismatches[:30])

    print(
        f"\n{len(records)} records on S.events accounted for in {elapsed:.1f}s; fast lane forwarded "
        f"{health.get('forwarded_total', 0)}"
    )
    print("| category | outcome | records |\n|---|---|---:|")
    print("\n".join(f"| {c} | {o} | {n} |" for (c, o), n in sorted(outcomes.items())))


def kept_bytes(record: Hostile, letter: DeadCopy, where: str) -> list[str]:
    """What is wrong with what a dead letter kept: the record's bytes, or, when too large, a prefix, size and hash."""
    problems = []
    original = record.value or b""
    kept = letter.value or b""
    if "truncated_from_bytes" in letter.headers:
        whole = (int(letter.headers["truncated_from_bytes"]), letter.headers.get("sha256"))
        if whole != (len(original), hashlib.sha256(original).hexdigest()) or not original.startswith(kept):
            problems.append(f"{where}: the truncated dead letter does not describe the record: {letter.headers}")
    elif kept != original:
        problems.append(f"{where}: the dead letter does not keep the record's {len(original)} bytes ({len(kept)} kept)")
    # Keys that are not UTF-8 come back altered (the loop holds keys as text): only UTF-8 keys are checked.
    if "key_truncated_from_bytes" not in letter.headers and is_utf8(record.key) and letter.key != record.key:
        problems.append(f"{where}: the dead letter's key is not the record's")
    return problems


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- in process: dead letters of huge records fit the record limit (each of these crashed validation before) ----


def dead_letter(value: bytes, key: bytes, headers: list[tuple[str, bytes]], violation_value: Any = None) -> DeadLetter:
    violations = (Violation("region", "allowed", violation_value, "region is not allowed"),) if violation_value else ()
    return DeadLetter(
        "demo.events", 0, 7, key, value, headers, 1, "validation", "contract:allowed", "Rejected", "no", violations
    )


@pytest.mark.parametrize(
    ("letter", "cut"),
    [
        pytest.param(dead_letter(b"v" * 600_000, b"k", [], "r" * 600_000), set(), id="huge-violation-value"),
        pytest.param(dead_letter(b"v" * 500_000, b"k" * 500_000, []), {"value"}, id="value-and-key-together"),
        pytest.param(dead_letter(b"v" * 10, b"k" * 2_000_000, []), {"key"}, id="huge-key"),
        pytest.param(dead_letter(b"v" * 10, b"k", [("h", b"x" * 1_000_000)]), {"headers"}, id="huge-input-headers"),
        pytest.param(dead_letter(b"v" * 2_000_000, b"k", [("h", b"x")]), {"value"}, id="huge-value"),
    ],
)
def test_a_dead_letter_always_fits_the_record_limit(letter: DeadLetter, cut: set[str]) -> None:
    value, key, headers = fit_dead_letter(letter)
    assert record_bytes(value, key, headers) <= MAX_RECORD_BYTES
    meta = read_dlq_headers(headers)
    assert meta["reason"] == "contract:allowed" and meta["source.offset"] == "7"
    assert ("truncated_from_bytes" in meta) == ("value" in cut)
    assert ("key_truncated_from_bytes" in meta) == ("key" in cut)
    assert ("headers_dropped" in meta) == ("headers" in cut)
    if "value" in cut:
        assert meta["sha256"] == hashlib.sha256(letter.value or b"").hexdigest()
    else:
        assert value == letter.value
    if letter.violations:
        (violation,) = json.loads(meta["violations"])
        assert violation["value"].startswith("rrr") and len(violation["value"]) < 300
