"""Kafka client configuration and topic administration.

The settings here are correct on real Kafka and on the embedded broker alike:
earliest resets, idempotent producers, short fetch waits, and the Java client's
murmur2 partitioner so that records keyed by event_id land in the same partition
number whatever client produced them (predictions and feedback co-partition).

Every librdkafka client eddy builds takes its config from ``producer_config``,
``consumer_config`` or ``admin_client``, and each of them adds
``security_config``: the ``EDDY_KAFKA_*`` security settings.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eddy.core.settings import Settings
from eddy.kafka.retention import topic_retention

log = logging.getLogger(__name__)

# The cluster's ACLs refuse this principal a topic or a consumer group: waiting does not help, an operator does.
AUTHORIZATION_DENIED = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED})


class NotAuthorized(RuntimeError):
    """A read or write the cluster's ACLs refuse (:data:`AUTHORIZATION_DENIED`); the message says which."""


# librdkafka's own log lines go through Python logging (JSON in services, quiet in the CLI), not raw stderr.
client_log = logging.getLogger("librdkafka")


def security_config(settings: Settings) -> dict[str, str]:
    """The librdkafka properties of the ``EDDY_KAFKA_*`` security settings.

    PLAINTEXT (the default, and the embedded broker's) adds nothing. SASL properties come only with
    the SASL_* protocols and TLS properties only with SSL and SASL_SSL; TLS files left empty are left
    to librdkafka's defaults (the system's CA store).

    Parameters
    ----------
    settings : Settings
        Settings already checked at construction (known protocol, SASL credentials present).

    Returns
    -------
    dict of str to str
        Properties to merge into a producer, consumer or admin client config.

    Examples
    --------
    >>> security_config(Settings())
    {}
    >>> security_config(Settings(kafka_security_protocol="SSL", kafka_ssl_ca_location="/ca.pem"))
    {'security.protocol': 'SSL', 'ssl.endpoint.identification.algorithm': 'https', 'ssl.ca.location': '/ca.pem'}
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = settings.kafka_sasl_password
    if protocol.endswith("SSL"):
        conf["ssl.endpoint.identification.algorithm"] = settings.kafka_ssl_endpoint_identification
        files = {
            "ssl.ca.location": settings.kafka_ssl_ca_location,
            "ssl.certificate.location": settings.kafka_ssl_certificate_location,
            "ssl.key.location": settings.kafka_ssl_key_location,
            "ssl.key.password": settings.kafka_ssl_key_password,
        }
        conf.update({name: value for name, value in files.items() if value})
    return conf


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.service_name,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "message.timeout.ms": 30000,
        "logger": client_log,
        **security_config(settings),
    }
    conf.update(overrides)
    return conf


def consumer_config(settings: Settings, group_id: str, *, background: bool = False, **overrides: Any) -> dict[str, Any]:
    """A consumer's settings; a ``background`` one (off the prediction path) waits longer per fetch.

    The read-ahead is bounded: librdkafka fetches until 10,000 records or 8 MB wait unread in the client,
    not its defaults of 100,000 records and 64 MB. A consumer that falls behind fills its read-ahead, and
    that memory stays resident after the lag is read: in a soak with the learner held to a tenth of a core,
    its librdkafka broker thread's heap held 51 MB at a lag of 99,000 records (about 510 bytes a record)
    and its RSS rose 63 MB; with these bounds and the same throttle, its lag stayed near 11,000 and its
    RSS rose 15 MB. A caller that sizes the read-ahead itself (``queued.min.messages``, as the bulk reads
    do) keeps librdkafka's byte bound unless it names one.
    """
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.service_name,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(500, min(3000, settings.session_timeout_ms // 6)),
        "fetch.wait.max.ms": settings.background_fetch_wait_max_ms if background else settings.fetch_wait_max_ms,
        "partition.assignment.strategy": "range",
        # read_committed where the services write transactions (EDDY_KAFKA_TRANSACTIONS), for every reader.
        "isolation.level": settings.isolation_level,
        "logger": client_log,
        **security_config(settings),
    }
    if "queued.min.messages" not in overrides:
        conf.update(
            {
                # 20 micro-batches of the default 500 records.
                "queued.min.messages": 10_000,
                "queued.max.messages.kbytes": 8192,
                # How long librdkafka waits to fetch again once a bound is reached (default 1 s). With bounds this
                # small the default cut a backlog read from 1.5 million records/s to 35,000-64,000.
                "fetch.queue.backoff.ms": 10,
            }
        )
    conf.update(overrides)
    return conf


def admin_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.service_name,
        "logger": client_log,
        **security_config(settings),
    }


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))


def ensure_topics(settings: Settings, topics: list[str], timeout_s: float = 30.0) -> None:
    """Create the topics that do not exist yet, with eddy's partition count.

    Topics are always created explicitly: a broker that auto-creates them (the
    embedded one does) would pick its own partition count and break
    co-partitioning of predictions and feedback.
    """
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"Kafka at {settings.bootstrap_servers} is not reachable: {exc}") from exc
            time.sleep(0.2)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return
    futures = admin.create_topics(
        [
            NewTopic(t, settings.partitions, settings.replication_factor, config=topic_config(settings, t))
            for t in wanted
        ],
        operation_timeout=10,
    )
    for topic, future in futures.items():
        try:
            future.result()
            log.info("created topic", extra={"topic": topic, "partitions": settings.partitions})
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_in_metadata(admin, wanted, deadline)


def _wait_in_metadata(admin: AdminClient, topics: list[str], deadline: float) -> None:
    """Until the metadata a client gets shows ``topics``, each partition with a leader.

    Apache Kafka acknowledges a creation once its controller has it; the broker a client asks next
    may not know the topic for a moment, and a reader would call it missing.
    """
    missing = list(topics)
    while missing and time.monotonic() < deadline:
        try:
            found = admin.list_topics(timeout=5).topics
        except KafkaException:
            found = {}
        missing = [
            t
            for t in missing
            if t not in found
            or found[t].error is not None
            or not found[t].partitions
            or any(p.leader < 0 for p in found[t].partitions.values())
        ]
        if missing:
            time.sleep(0.1)


def cluster_id(settings: Settings, timeout_s: float = 10.0) -> str:
    """The broker cluster's id: checkpoints from another cluster do not apply here."""
    metadata = admin_client(settings).list_topics(timeout=timeout_s)
    return str(metadata.cluster_id or "unknown")


def assign_from(consumer: Consumer, topics: list[str], start: dict[str, int] | None = None) -> None:
    """Assign every partition of ``topics`` at ``start`` ("topic:partition" -> offset), else the beginning.

    No group, no "latest" offset asked of the broker (the embedded one reports it wrong); missing
    topics are skipped.
    """
    start = start or {}
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            TopicPartition(t, p, start.get(f"{t}:{p}", OFFSET_BEGINNING))
            for t in topics
            if t in metadata.topics
            for p in sorted(metadata.topics[t].partitions)
        ]
    )


# A bulk read keeps a large prefetch queue: the client then fetches ahead while Python decodes, which
# measured more than twice the default's records/s against the embedded broker. The history reader
# (eddy.history.reader) reads with it.
BULK_READ: dict[str, Any] = {"queued.min.messages": 1_000_000, "fetch.wait.max.ms": 10}


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """The topic-level configs eddy creates ``topic`` with: its family's retention or compaction
    (``eddy.kafka.retention``), and ``min.insync.replicas`` where topics are replicated.

    Tansu accepts and ignores them. Existing topics are never altered (operations.md says how).

    >>> topic_config(Settings(replication_factor=3, min_insync_replicas=2), "demo.profiles")
    {'cleanup.policy': 'compact', 'min.insync.replicas': '2'}
    """
    conf = topic_retention(settings, topic)
    if settings.replication_factor > 1:
        conf["min.insync.replicas"] = str(settings.min_insync_replicas)
    return conf


# A group coordinator that moves or is still loading (a new cluster, a broker restart) answers these for a while.
COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def committed_offsets(consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 30.0) -> list[Any]:
    """``consumer.committed(partitions)``, asked again while the group's coordinator moves or loads.

    librdkafka raises NOT_COORDINATOR and its kin instead of waiting for the coordinator: on Apache
    Kafka they are the normal answer for the first seconds of a cluster and after a broker fails over.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return list(consumer.committed(partitions, timeout=max(1.0, min(10.0, deadline - time.monotonic()))))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            moving = isinstance(error, KafkaError) and (error.code() in COORDINATOR_MOVING or error.retriable())
            if not moving or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
