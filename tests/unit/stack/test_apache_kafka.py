"""The local Apache Kafka's install and node settings, without starting a JVM; and one pinned version everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from eddy.core.settings import REPO_ROOT, Settings, SettingsError
from eddy.stack import apache_kafka
from eddy.stack.apache_kafka import KAFKA_VERSION, KafkaNode, KafkaUnavailable, fetch_pom, install, node_properties


def test_compose_and_the_kubernetes_notes_name_the_pinned_version() -> None:
    images = []
    for path in (REPO_ROOT / "docker-compose.yml", REPO_ROOT / "infra/compose/kafka-sasl.yml"):
        doc = yaml.safe_load(path.read_text())
        images += [s["image"] for s in doc["services"].values() if "apache/kafka" in str(s.get("image", ""))]
    assert images and set(images) == {f"apache/kafka:{KAFKA_VERSION}"}
    notes = (REPO_ROOT / "infra/k8s/README.md").read_text()
    assert set(re.findall(r"Apache Kafka (\d+\.\d+\.\d+)", notes)) == {KAFKA_VERSION}
    assert f"spec.kafka.version: {KAFKA_VERSION}" in notes


def test_the_fetch_asks_maven_for_the_pinned_broker_and_a_real_logger() -> None:
    pom = fetch_pom(KAFKA_VERSION)
    assert f"<artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version>" in pom
    assert "<artifactId>log4j-slf4j2-impl</artifactId>" in pom


def test_a_three_node_cluster_replicates_its_internal_topics_and_keeps_one_quorum(tmp_path: Path) -> None:
    nodes = [KafkaNode(i, 9000 + i, 9100 + i, tmp_path / f"n{i}", tmp_path / f"n{i}.log") for i in (1, 2, 3)]
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    props = [node_properties(n, voters, 3, {}) for n in nodes]
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert all(p["offsets.topic.replication.factor"] == "3" for p in props)
    assert all(p["transaction.state.log.min.isr"] == "2" for p in props)
    # Everything listens on loopback only.
    loopback = re.compile(r"PLAINTEXT://127\.0\.0\.1:\d+,CONTROLLER://127\.0\.0\.1:\d+")
    assert all(loopback.fullmatch(p["listeners"]) for p in props)
    single = node_properties(nodes[0], "1@127.0.0.1:9101", 1, {"log.retention.check.interval.ms": "1000"})
    assert single["offsets.topic.replication.factor"] == "1" and single["transaction.state.log.min.isr"] == "1"
    assert single["log.retention.check.interval.ms"] == "1000"


def test_without_java_or_maven_the_install_says_what_is_missing_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDDY_KAFKA_HOME", str(tmp_path / "kafka"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(KafkaUnavailable) as err:
        install()
    assert str(err.value) == "Apache Kafka needs java and mvn on PATH (Java 17+ and Maven): not found"
    assert not (tmp_path / "kafka").exists()


def test_an_installed_copy_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "kafka"
    (home / "libs").mkdir(parents=True)
    (home / apache_kafka.READY_MARKER).write_text("done\n")
    monkeypatch.setenv("EDDY_KAFKA_HOME", str(home))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no Maven needed once installed
    assert install() == home


def test_the_embedded_broker_setting_takes_only_known_brokers() -> None:
    assert Settings.from_env({"EDDY_EMBEDDED_BROKER": " Kafka "}).embedded_broker == "kafka"
    with pytest.raises(SettingsError, match="EDDY_EMBEDDED_BROKER='redpanda' is not one of tansu, kafka"):
        Settings.from_env({"EDDY_EMBEDDED_BROKER": "redpanda"})
    with pytest.raises(SettingsError, match="EDDY_MIN_INSYNC_REPLICAS=2 must be between 1 and"):
        Settings(min_insync_replicas=2)
