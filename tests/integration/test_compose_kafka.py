"""Compose's Kafka settings, run: the broker settings docker-compose.yml gives apache/kafka, on the same release.

No Docker engine runs here, so compose itself cannot start. Its image is Apache Kafka of the pinned
version, configured by ``KAFKA_*`` variables that the image turns into ``server.properties`` keys
(``KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS`` is ``group.initial.rebalance.delay.ms``). This starts the
locally installed release with those keys, keeping only the addresses and directories local, and puts
eddy's topics and a record through it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import ensure_topics
from eddy.stack.apache_kafka import start_kafka

from tests.helpers import produce_values, read_topic
from tests.records import event

pytestmark = pytest.mark.integration

# Where compose's broker listens and keeps its data: the launcher's loopback ports and temp dirs instead.
LOCAL_ONLY = {
    "node.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "listener.security.protocol.map",
    "controller.listener.names",
    "log.dirs",
}


def compose_broker_properties() -> dict[str, str]:
    """docker-compose.yml's KAFKA_* variables of the kafka service as server.properties keys."""
    env = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["kafka"]["environment"]
    return {
        name[len("KAFKA_") :].lower().replace("_", "."): str(value)
        for name, value in env.items()
        if name.startswith("KAFKA_")
    }


def test_compose_creates_topics_explicitly_like_the_local_broker() -> None:
    props = compose_broker_properties()
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"


def test_a_broker_with_composes_settings_serves_eddys_topics(
    broker_kind: str, tmp_path: Path, settings: Settings
) -> None:
    if broker_kind != "kafka":
        pytest.skip("compose runs Apache Kafka: this is the Kafka tier's")
    overrides = {k: v for k, v in compose_broker_properties().items() if k not in LOCAL_ONLY}
    cluster = start_kafka(tmp_path / "compose-kafka", 1, overrides=overrides)
    try:
        on_it = Settings(
            bootstrap_servers=cluster.bootstrap_servers,
            schema_registry_url=settings.schema_registry_url,
            contracts_dir=settings.contracts_dir,
            streams=settings.streams,
            session_timeout_ms=6000,
        )
        (stream,) = on_it.streams
        ensure_topics(on_it, StreamTopics(stream).all() + list(PLATFORM_TOPICS))
        produce_values(on_it, StreamTopics(stream).events, [event(i) for i in range(5)])
        assert len(read_topic(on_it, StreamTopics(stream).events, expect=5, timeout_s=30)) == 5
    finally:
        cluster.stop()
