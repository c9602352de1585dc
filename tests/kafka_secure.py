"""Helpers for tests on a secured Apache Kafka node (SASL/SCRAM, ACLs): principals' settings and probes."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.acls import principal
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.stack.kafka_security import ADMIN, MECHANISM, SecureKafka, start_secure_kafka

from tests.helpers import log_records, read_topic, sample_events, sample_labels, serdes_for, service, wait_until

# The order they start in: the registry first publishes the models the others load.
SERVICES = ["model_registry", "validation", "inference", "learning", "monitoring", "retraining", "ingestion"]
EVENTS = 200
OK = "ok"
NO_ANSWER = "no answer"
# What a refused read looks like: an explicit refusal, or, for a topic the principal may not describe, silence.
REFUSED_READ = frozenset({"TOPIC_AUTHORIZATION_FAILED", NO_ANSWER})


def contracts_for(directory: Path, streams: list[str]) -> Path:
    """A contracts directory holding the demo contract under each of ``streams``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "schemas/streams/demo.avsc", directory / "demo.avsc")
    text = (REPO_ROOT / "schemas/streams/demo.yaml").read_text()
    for name in streams:
        (directory / f"{name}.yaml").write_text(text.replace("stream: demo", f"stream: {name}"))
    return directory


@dataclass
class SecureEnv:
    """A secured node with every principal of ``eddy.kafka.acls`` applied, and settings that reach it."""

    kafka: SecureKafka
    base: Settings

    def as_user(self, username: str, **changes: Any) -> Settings:
        password = self.kafka.admin_password if username == ADMIN else self.kafka.passwords[username]
        return dataclasses.replace(
            self.base,
            kafka_security_protocol=self.kafka.protocol,
            kafka_sasl_mechanism=MECHANISM,
            kafka_sasl_username=username,
            kafka_sasl_password=password,
            kafka_ssl_ca_location=str(self.kafka.tls.ca) if self.kafka.tls else "",
            **changes,
        )

    def as_role(self, role: str, **changes: Any) -> Settings:
        """The settings a process of ``role`` (a service, or a user role of the table) runs with."""
        return self.as_user(principal(role).name, **changes)


def write_outcomes(
    settings: Settings, topics: list[str], timeout_s: float = 20.0, idempotent: bool = True
) -> dict[str, str]:
    """Produce one record to each topic with the service producer's config: ``ok`` or the error's name."""
    outcomes: dict[str, str] = {}

    def delivered(err: KafkaError | None, msg: Any) -> None:
        outcomes[msg.topic()] = OK if err is None else err.name()

    limit = {"message.timeout.ms": int(timeout_s * 1000) - 2000}
    plain = {} if idempotent else {"enable.idempotence": False}
    producer = Producer(producer_config(settings, **limit, **plain))
    try:
        for topic in topics:
            producer.produce(topic, b"acl-probe", b"acl-probe", on_delivery=delivered)
        producer.flush(timeout_s)
    except KafkaException as exc:
        # A principal that may write nowhere gets no producer id: fatal for the producer, every record refused.
        return {t: outcomes.get(t, exc.args[0].name()) for t in topics}
    return {t: outcomes.get(t, "no delivery report") for t in topics}


def read_outcomes(
    settings: Settings, topics: list[str], group: str, timeout_s: float = 15.0, quiet_s: float = 4.0
) -> dict[str, str]:
    """Fetch partition 0 of each topic from the beginning: ``ok`` (a record, or its end) or the error's name.

    A topic the principal may not even describe may give no answer at all (``no answer``): the client
    never learns its partition. Errors that name no topic (the group coordinator's answer for a group
    not granted) are left out. Stops once every topic answered, or nothing new came for ``quiet_s``.
    """
    consumer = Consumer(consumer_config(settings, group, **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics])
    outcomes: dict[str, str] = {}
    started = last = time.monotonic()
    try:
        while len(outcomes) < len(topics) and time.monotonic() - started < timeout_s:
            if time.monotonic() - last > quiet_s:
                break
            for msg in consumer.consume(100, 0.2):
                topic = msg.topic()
                if topic is None or topic in outcomes:
                    continue
                last = time.monotonic()
                error = msg.error()
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    outcomes[topic] = OK
                else:
                    outcomes[topic] = error.name()
    finally:
        consumer.close()
    return {t: outcomes.get(t, NO_ANSWER) for t in topics}


def probe_group(name: str) -> str:
    """A concrete group for a table entry: itself, or a fresh name under its prefix."""
    return f"{name[:-1]}probe-{uuid.uuid4().hex[:6]}" if name.endswith("*") else name


def skip_unless_kafka_tier() -> None:
    """Skip unless this session runs the Kafka tier; without Java or Maven, skip (or fail with EDDY_REQUIRE_KAFKA)."""
    from tests.conftest import broker_tiers, skip_without_kafka

    if "kafka" not in broker_tiers():
        pytest.skip("the kafka tier is not selected (EDDY_TEST_BROKERS, EDDY_BOOTSTRAP_SERVERS)")
    skip_without_kafka()


@contextmanager
def secure_env(root: Path, protocol: str, registry_url: str, streams: int) -> Iterator[SecureEnv]:
    """A secured node under ``root`` with every principal applied for ``streams`` fresh streams, whose
    topics the ``topics job`` principal created, as in a deployment; stopped on exit.
    """
    names = [f"s{uuid.uuid4().hex[:8]}" for _ in range(streams)]
    kafka = start_secure_kafka(root / "kafka", protocol=protocol)
    try:
        base = Settings(
            bootstrap_servers=kafka.bootstrap_servers,
            schema_registry_url=registry_url,
            state_dir=root / "state",
            contracts_dir=contracts_for(root / "contracts", names),
            streams=tuple(names),
            session_timeout_ms=6000,
            background_fetch_wait_max_ms=100,
            partitions=1,
            group_prefix=f"eddy-{names[-1]}",
        )
        kafka.apply_principals(names, base.group_prefix)
        env = SecureEnv(kafka, base)
        topics = [t for s in names for t in StreamTopics(s).all()] + list(PLATFORM_TOPICS)
        ensure_topics(env.as_role("topics job"), topics)
        yield env
    finally:
        kafka.stop()


def authorization_failures(log: Path) -> list[dict[str, Any]]:
    """The log records of a service that mention a refusal by the broker's authorizer."""
    return [r for r in log_records(log) if "authorization failed" in str(r).lower().replace("_", " ")]


def read_in_group(settings: Settings, topic: str, expect: int, group: str, timeout_s: float = 60.0) -> list[Any]:
    """Decode ``expect`` records of ``topic`` read and committed in ``group`` (the principal must be granted it)."""
    serde = serdes_for(settings).for_topic(topic)
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                error = msg.error()
                assert error is None or error.code() == KafkaError._PARTITION_EOF, error
                if error is None:
                    out.append(serde.decode(msg.value()))
        if out:
            consumer.commit(offsets=consumer.position(consumer.assignment()), asynchronous=False)
    finally:
        consumer.close()
    return out


def run_pipeline_as_principals(env: SecureEnv, stream: str, tmp_path: Path, events: int = EVENTS) -> float:
    """Run the seven services, each as its own principal, with transactions; send events and labels through
    the gateway; check the viewer reads every prediction and learning labels every event; check no service
    met an authorization failure. Returns the seconds it took.
    """
    started = time.monotonic()
    logs: list[Path] = []
    with ExitStack() as stack:
        urls = {}
        for name in SERVICES:
            settings = env.as_role(name, streams=(stream,), kafka_transactions=True)
            _, url, log = stack.enter_context(service(name, settings, tmp_path, EDDY_INSTANCE_ID="acl-test"))
            urls[name] = url
            logs.append(log)

        def all_ready() -> bool:
            return all(httpx.get(f"{u}/healthz?ready=1", timeout=5).status_code == 200 for u in urls.values())

        wait_until(all_ready, 90, what="every service ready")
        gateway = urls["ingestion"]
        r = httpx.post(f"{gateway}/v1/streams/{stream}/events", json=sample_events(0, events), timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == events, r.text
        viewer = env.as_role("viewer (user role)", kafka_transactions=True)
        group = f"{viewer.group_prefix}-viewer-test"
        predictions = read_in_group(viewer, StreamTopics(stream).predictions, events, group)
        assert {p["event_id"] for p in predictions} >= {f"ev{i}" for i in range(events)}
        r = httpx.post(f"{gateway}/v1/streams/{stream}/feedback", json=sample_labels(0, events), timeout=30)
        assert r.status_code == 200, r.text
        admin = env.as_user(ADMIN, kafka_transactions=True)
        labeled = read_topic(admin, StreamTopics(stream).labeled, expect=events, timeout_s=60)
        assert len({x["event_id"] for x in labeled}) == events
        for url in urls.values():  # each still ready after the traffic
            assert httpx.get(f"{url}/healthz?ready=1", timeout=5).status_code == 200
    denied = [(log.name, record) for log in logs for record in authorization_failures(log)]
    assert not denied, denied
    return time.monotonic() - started
