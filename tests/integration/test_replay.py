"""``eddy replay`` against the real broker: exact ranges by offset and by time, --scan, --rate, signals.

Every partition's timestamps rise, but the partitions are interleaved so that
timestamps go backwards across them in produce order: a time range is exact
only if each partition is searched on its own. One topic also has timestamps
out of order within a partition, where only --scan is exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Message, TopicPartition
from eddy.core.settings import REPO_ROOT, Settings
from eddy.history.bounds import Bound, parse_bound
from eddy.history.replay import ReplayError, format_summary, replay
from eddy.kafka.client import admin_client, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer

from tests.helpers import read_topic

pytestmark = pytest.mark.integration

T0 = 1_795_168_800_000  # 2026-11-20T10:00:00Z
PARTITIONS = 4
PER_PARTITION = 60
# Each partition's own start and step: partition 2 starts before partition 0, partition 1 after, and so on.
CLOCKS = {0: (T0, 10), 1: (T0 + 300, 7), 2: (T0 - 200, 13), 3: (T0 + 100, 3)}

Record = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]
"""(partition, key, value, headers, timestamp): what a replay must carry over unchanged."""


@pytest.fixture()
def kafka(bootstrap_servers: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap_servers, session_timeout_ms=6000, fetch_wait_max_ms=10)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_topic(settings: Settings, partitions: int = PARTITIONS) -> str:
    topic = fresh("replay-src")
    ensure_topics(replace(settings, partitions=partitions), [topic])
    return topic


def produce(settings: Settings, topic: str, records: list[Record]) -> None:
    producer = ConfirmedProducer(producer_config(settings))
    for partition, key, value, headers, ts in records:
        # ConfirmedProducer has no partition argument: the underlying client's produce takes one.
        producer._producer.produce(topic, value, key, partition, timestamp=ts, headers=list(headers))
    producer.confirm()


def interleaved_records() -> list[Record]:
    """PER_PARTITION records per partition, produced round-robin, with keys, values and headers that vary."""
    records: list[Record] = []
    for i in range(PER_PARTITION):
        for p, (start, step) in CLOCKS.items():
            key = None if i % 17 == 0 else f"k{p}-{i}".encode()
            headers = (("src", f"{p}:{i}".encode()), ("dup", b"a"), ("dup", b"b")) if i % 3 else ()
            records.append((p, key, bytes([p, i % 256, 0, 255]) * (i % 5), headers, start + step * i))
    return records


def as_record(msg: Message) -> Record:
    headers = tuple((k, v) for k, v in (msg.headers() or []))
    return msg.partition() or 0, msg.key(), msg.value(), headers, msg.timestamp()[1]


def target_records(settings: Settings, topic: str) -> Counter[Record]:
    return Counter(as_record(m) for m in read_topic(settings, topic, decode=False, timeout_s=20, quiet_s=1.0))


def in_time(records: list[Record], lo: int, hi: int) -> Counter[Record]:
    return Counter(r for r in records if lo <= r[4] < hi)


@pytest.fixture()
def source(kafka: Settings) -> tuple[str, list[Record]]:
    topic = make_topic(kafka)
    records = interleaved_records()
    produce(kafka, topic, records)
    return topic, records


def test_the_high_watermark_read_at_start_is_the_log_end(kafka: Settings, source: tuple[str, list[Record]]) -> None:
    from eddy.history.reader import fix_spans

    topic, _ = source
    spans = fix_spans(kafka, [topic])
    assert {s.partition: (s.low, s.high, s.first, s.end) for s in spans} == dict.fromkeys(
        range(PARTITIONS), (0, PER_PARTITION, 0, PER_PARTITION)
    )


@pytest.mark.parametrize(
    ("start", "until", "lo", "hi"),
    [
        (str(T0 + 100), str(T0 + 400), T0 + 100, T0 + 400),
        ("ms:1795168800150", "2026-11-20T10:00:00.550Z", T0 + 150, T0 + 550),
        ("2026-11-20T10:00:00.007", None, T0 + 7, 2**63),
        (None, "2026-11-20T10:00:00.321+00:00", -(2**63), T0 + 321),
    ],
    ids=["epoch-ms", "ms-prefix-and-iso", "naive-iso-from", "iso-until"],
)
def test_a_time_range_copies_exactly_the_records_in_it(
    kafka: Settings, source: tuple[str, list[Record]], start: str | None, until: str | None, lo: int, hi: int
) -> None:
    topic, records = source
    target = fresh("replay-dst")
    result = replay(kafka, topic, target, parse_bound(start) if start else None, parse_bound(until) if until else None)
    expected = in_time(records, lo, hi)
    assert target_records(kafka, target) == expected
    assert result.total == expected.total() and result.failed == 0 and not result.interrupted
    assert result.same_partitions and result.out_of_order_total == 0
    # The search reads nothing outside the range: whatever the window held was copied.
    assert result.skipped == 0
    assert result.copied == {p: sum(1 for r in expected if r[0] == p) for p in range(PARTITIONS)}


def test_an_offset_range_applies_in_every_partition(kafka: Settings, source: tuple[str, list[Record]]) -> None:
    topic, records = source
    target = fresh("replay-dst")
    result = replay(kafka, topic, target, Bound("offset", 5), Bound("offset", 20))
    per_partition = {p: [r for r in records if r[0] == p] for p in range(PARTITIONS)}
    expected = Counter(r for p in range(PARTITIONS) for r in per_partition[p][5:20])
    assert target_records(kafka, target) == expected
    assert result.windows == dict.fromkeys(range(PARTITIONS), (5, 20))
    assert result.total == 15 * PARTITIONS


def test_offset_and_time_bounds_combine(kafka: Settings, source: tuple[str, list[Record]]) -> None:
    topic, records = source
    target = fresh("replay-dst")
    replay(kafka, topic, target, Bound("offset", 10), Bound("time", T0 + 300), partition=2)
    expected = Counter(r for r in [r for r in records if r[0] == 2][10:] if r[4] < T0 + 300)
    assert target_records(kafka, target) == expected and expected


def test_a_target_with_fewer_partitions_is_filled_by_key(kafka: Settings, source: tuple[str, list[Record]]) -> None:
    topic, records = source
    target = fresh("replay-dst")
    ensure_topics(replace(kafka, partitions=2), [target])
    result = replay(kafka, topic, target)
    assert not result.same_partitions
    copied = target_records(kafka, target)
    assert Counter(r[1:] for r in copied.elements()) == Counter(r[1:] for r in records)
    assert {r[0] for r in copied} <= {0, 1}


def test_scan_is_exact_when_a_partition_goes_back_in_time(kafka: Settings) -> None:
    topic = make_topic(kafka, partitions=2)
    shuffled = [50, 10, 90, 20, 70, 30, 30, 95, 5, 60, 40, 80, 15, 65, 25, 85]
    records: list[Record] = [(0, f"a{i}".encode(), b"x", (), T0 + t) for i, t in enumerate(shuffled)]
    records += [(1, f"b{i}".encode(), b"y", (), T0 + 5 * i) for i in range(20)]
    produce(kafka, topic, records)
    lo, hi = T0 + 20, T0 + 60

    scanned = fresh("replay-dst")
    result = replay(kafka, topic, scanned, Bound("time", lo), Bound("time", hi), scan=True)
    assert target_records(kafka, scanned) == in_time(records, lo, hi)
    assert result.windows == {0: (0, 16), 1: (0, 20)}
    assert result.skipped == len(records) - in_time(records, lo, hi).total()
    assert "--scan reads" not in format_summary(result)

    # Without --scan nothing outside the range is copied either, and the summary points at --scan.
    searched = fresh("replay-dst")
    result = replay(kafka, topic, searched, Bound("time", lo), Bound("time", hi))
    assert set(target_records(kafka, searched)) <= set(in_time(records, lo, hi))
    assert result.out_of_order[0] > 0 and result.out_of_order[1] == 0
    assert "--scan reads every partition whole and gives the exact answer" in format_summary(result)


def test_rate_is_respected(kafka: Settings) -> None:
    topic = make_topic(kafka, partitions=1)
    produce(kafka, topic, [(0, b"k", b"v", (), T0 + i) for i in range(200)])
    began = time.monotonic()
    result = replay(kafka, topic, fresh("replay-dst"), rate=1000)
    took = time.monotonic() - began
    assert result.total == 200
    assert 0.15 <= took < 10, took


def test_the_end_is_fixed_when_the_replay_starts(kafka: Settings) -> None:
    topic = make_topic(kafka, partitions=2)
    produce(kafka, topic, [(i % 2, b"k", b"v", (), T0 + i) for i in range(2000)])
    stop_writing = threading.Event()

    def keep_writing() -> None:
        producer = ConfirmedProducer(producer_config(kafka))
        deadline = time.monotonic() + 20
        while not stop_writing.is_set() and time.monotonic() < deadline:
            for _ in range(200):
                producer.produce(topic, b"later", b"k", None, T0)
            producer.confirm()

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        time.sleep(0.3)
        result = replay(kafka, topic, fresh("replay-dst"), rate=20_000)
        assert writer.is_alive(), "the replay must finish while the topic is still being written"
    finally:
        stop_writing.set()
        writer.join(30)
    assert result.total == result.planned >= 2000


def test_bad_requests_are_one_line_errors(kafka: Settings, source: tuple[str, list[Record]]) -> None:
    topic, _ = source
    cases = [
        (lambda: replay(kafka, fresh("no-such"), fresh("replay-dst")), "no topic 'no-such-"),
        (lambda: replay(kafka, topic, fresh("replay-dst"), partition=9), "has no partition 9"),
        (lambda: replay(kafka, topic, topic), "is the source topic"),
        (lambda: replay(kafka, topic, fresh("d"), Bound("time", T0), Bound("time", T0)), "range is empty"),
        (lambda: replay(kafka, topic, fresh("d"), rate=-1), "must be 0 (no limit) or positive"),
    ]
    existing = set(admin_client(kafka).list_topics(timeout=10).topics)
    for call, message in cases:
        with pytest.raises(ReplayError) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value)
    # A refused replay creates nothing.
    created = set(admin_client(kafka).list_topics(timeout=10).topics) - existing
    assert not created, created


CLI = """
import argparse, sys
from eddy.cli import replay as cli_replay
parser = argparse.ArgumentParser(prog="eddy")
cli_replay.add_parsers(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def run_cli(kafka: Settings, tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, **kafka.kafka_env(), "EDDY_STATE_DIR": str(tmp_path / "state")}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *argv],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_copies_and_summarises(kafka: Settings, source: tuple[str, list[Record]], tmp_path: Path) -> None:
    topic, records = source
    target = fresh("replay-dst")
    proc = run_cli(kafka, tmp_path, "replay", topic, "--to-topic", target, "--from", "2026-11-20T10:00:00.100Z")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    expected = in_time(records, T0 + 100, 2**63)
    assert f"copied {expected.total()} records from {topic} to {target}" in out
    assert target_records(kafka, target) == expected


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_cli_stops_on_a_signal_flushes_and_summarises(kafka: Settings, tmp_path: Path, signum: int, code: int) -> None:
    topic = make_topic(kafka, partitions=1)
    produce(kafka, topic, [(0, f"k{i}".encode(), b"v", (), T0 + i) for i in range(3000)])
    target = fresh("replay-dst")
    proc = run_cli(kafka, tmp_path, "replay", topic, "--to-topic", target, "--rate", "500")
    deadline = time.monotonic() + 30
    # Signal once the copy is under way: some records are in the target.
    while time.monotonic() < deadline and not _has_records(kafka, target):
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert out.startswith("stopped early: copied ")
    copied = int(out.split()[3])
    assert 0 < copied < 3000
    # Everything counted as copied was flushed before the exit.
    assert sum(target_records(kafka, target).values()) == copied


def _has_records(settings: Settings, topic: str) -> bool:
    from confluent_kafka import Consumer
    from eddy.kafka.client import consumer_config

    if topic not in admin_client(settings).list_topics(timeout=5).topics:
        return False
    consumer = Consumer(consumer_config(settings, fresh("probe")))
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5, cached=False)
        return high > 0
    finally:
        consumer.close()
