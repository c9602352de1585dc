"""Test helpers that talk to the real broker: produce records, read topics back."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from shared.contracts import load_contracts
from shared.embedded import free_port
from shared.kafka import consumer_config, ensure_topics, producer_config
from shared.producer import ConfirmedProducer
from shared.serde import SerdeRegistry, registry_client
from shared.settings import REPO_ROOT, Settings
from shared.stack import wait_http
from shared.topics import MODEL_EVENTS_TOPIC, StreamTopics


def serdes_for(settings: Settings) -> SerdeRegistry:
    contracts = load_contracts(settings.contracts_dir, settings.streams)
    return SerdeRegistry(registry_client(settings.schema_registry_url), settings.schemas_dir, contracts)


def create_topics(settings: Settings) -> None:
    ensure_topics(settings, [t for s in settings.streams for t in StreamTopics(s).all()] + [MODEL_EVENTS_TOPIC])


def produce_values(settings: Settings, topic: str, values: list[dict[str, Any]], key_field: str = "event_id") -> None:
    serde = serdes_for(settings).for_topic(topic)
    producer = ConfirmedProducer(producer_config(settings))
    for value in values:
        producer.produce(topic, serde.encode(value), str(value[key_field]).encode(), None, None)
    producer.confirm()


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
    """``python -m services.<name>`` against the test broker and registry, on a free port, until healthy.

    Yields the process, its base URL and its log file; the log's tail is printed when it stops.
    """
    from tests.conftest import service_env

    port = free_port()
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
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
