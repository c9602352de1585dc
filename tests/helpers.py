"""Test helpers that talk to the real broker: produce records, read topics back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import NewTopic
from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import admin_client, consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.stack.embedded import free_port
from eddy.stack.up import wait_http
from prometheus_client.parser import text_string_to_metric_families


def serdes_for(settings: Settings) -> SerdeRegistry:
    contracts = load_contracts(settings.contracts_dir, settings.streams)
    return SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)


def create_topics(settings: Settings, events_max_bytes: int | None = None) -> None:
    """Every topic of the settings' streams; ``events_max_bytes`` opens each S.events to records that large.

    Apache Kafka refuses records over 1 MB unless the topic allows more, as an operator taking huge events
    would set it (Tansu takes up to 5 MB and ignores the setting).
    """
    if events_max_bytes is not None:
        admin = admin_client(settings)
        config = {"max.message.bytes": str(events_max_bytes)}
        wanted = [
            NewTopic(StreamTopics(s).events, settings.partitions, settings.replication_factor, config=config)
            for s in settings.streams
        ]
        for future in admin.create_topics(wanted).values():
            future.result()
    ensure_topics(settings, [t for s in settings.streams for t in StreamTopics(s).all()] + list(PLATFORM_TOPICS))


class ValueWriter:
    """Avro values to one topic, keyed by ``key_field``, through one producer kept open between sends."""

    def __init__(self, settings: Settings, topic: str, key_field: str = "event_id") -> None:
        self.topic = topic
        self.key_field = key_field
        self.serde = serdes_for(settings).for_topic(topic)
        self.producer = ConfirmedProducer(producer_config(settings))

    def send(self, values: list[dict[str, Any]]) -> None:
        """Produce ``values`` in order; return once the broker acknowledged every one."""
        for value in values:
            self.producer.produce(self.topic, self.serde.encode(value), str(value[self.key_field]).encode(), None, None)
        self.producer.confirm()


def produce_values(settings: Settings, topic: str, values: list[dict[str, Any]], key_field: str = "event_id") -> None:
    ValueWriter(settings, topic, key_field).send(values)


def produce_raw(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = ConfirmedProducer(producer_config(settings))
    for key, value in items:
        producer.produce(topic, value, key)
    producer.confirm()


def read_topic(
    settings: Settings,
    topic: str,
    expect: int | None = None,
    timeout_s: float = 30.0,
    decode: bool = True,
    quiet_s: float = 1.0,
) -> list[Any]:
    """Every record of ``topic`` from the beginning: until ``expect`` records, or quiet for ``quiet_s``."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}"))
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde = serdes_for(settings).for_topic(topic) if decode else None
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 0.2)
            for msg in msgs:
                if msg.error():
                    continue
                out.append(serde.decode(msg.value()) if serde else msg)
            if msgs:
                last_seen = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
            if expect is None and time.monotonic() - last_seen > quiet_s:
                break
    finally:
        consumer.close()
    return out


@contextmanager
def service(
    name: str, settings: Settings, tmp_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m eddy.services.<name>`` against the test broker and registry, on a free port, until healthy.

    Yields the process, its base URL and its log file; the log's tail is printed when it stops.
    """
    from tests.conftest import service_env

    port = free_port()
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"eddy.services.{name}"],
            env=service_env(settings, EDDY_HTTP_PORT=str(port), EDDY_SERVICE_NAME=name, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", 40)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        print(log.read_text()[-3000:])


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def sample_events(start: int, count: int) -> list[dict[str, Any]]:
    """Demo-stream events ``ev{start}``, ``ev{start+1}``, ... with features cycling over 0..9 and event times of now."""
    now = int(time.time() * 1000)
    return [
        {
            "event_id": f"ev{i}",
            "event_time_ms": now + i,
            "x0": float(i % 10),
            "x1": float((i * 7) % 10),
            "x2": float((i * 3) % 10),
            "region": "north",
        }
        for i in range(start, start + count)
    ]


def sample_labels(start: int, count: int) -> list[dict[str, Any]]:
    """The S.feedback labels of :func:`sample_events` with the same indices."""
    now = int(time.time() * 1000)
    return [
        {"event_id": f"ev{i}", "label": (i % 10) + ((i * 7) % 10) > 8, "label_time_ms": now, "source": "test"}
        for i in range(start, start + count)
    ]


def latest_snapshot_learned(settings: Settings, stream: str, model: str | None = None) -> int:
    """The highest ``learned_count`` among the snapshots on S.models, of ``model`` if named (-1: none)."""
    snapshots = read_topic(settings, StreamTopics(stream).models, timeout_s=10, quiet_s=0.5)
    return max((s["learned_count"] for s in snapshots if model in (None, s["model_name"])), default=-1)


def metric(url: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` on ``url``/metrics whose labels include ``labels`` (None: none)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def log_records(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a service log (a line still being written, or not JSON, is skipped)."""
    records = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            records.append(doc)
    return records


def assignment_changes(log: Path) -> list[tuple[str, set[str]]]:
    """The consumer-group ``assigned`` and ``revoked`` events a StreamLoop logged, in order."""
    return [
        (doc["msg"], set(doc.get("partitions", [])))
        for doc in log_records(log)
        if doc.get("msg") in ("assigned", "revoked") and doc.get("logger") == "eddy.runtime.loop"
    ]


def current_assignment(log: Path) -> set[str]:
    """The "topic:partition"s a StreamLoop holds now, according to its log."""
    held: set[str] = set()
    for kind, partitions in assignment_changes(log):
        held = held | partitions if kind == "assigned" else held - partitions
    return held
