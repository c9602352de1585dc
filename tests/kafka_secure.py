"""Helpers for tests on a secured Apache Kafka node (SASL/SCRAM, ACLs): principals' settings and probes."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from eddy.core.settings import REPO_ROOT, Settings
from eddy.kafka.acls import principal
from eddy.kafka.client import consumer_config, producer_config
from eddy.stack.kafka_security import ADMIN, MECHANISM, SecureKafka

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


def write_outcomes(settings: Settings, topics: list[str], timeout_s: float = 20.0) -> dict[str, str]:
    """Produce one record to each topic with the service producer's config: ``ok`` or the error's name."""
    outcomes: dict[str, str] = {}

    def delivered(err: KafkaError | None, msg: Any) -> None:
        outcomes[msg.topic()] = OK if err is None else err.name()

    producer = Producer(producer_config(settings, **{"message.timeout.ms": int(timeout_s * 1000) - 2000}))
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
