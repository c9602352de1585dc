"""Least privilege on real Apache Kafka: SASL/SCRAM, the standard authorizer, one principal per service.

One secured KRaft node for the module (``eddy.stack.kafka_security``), every principal of
``eddy.kafka.acls.PRINCIPALS`` created with its ACLs, and then:

- the seven services, each as its own principal with transactions on, run the pipeline end to end
  and never meet an authorization error (what the table grants is enough);
- the full matrix: every principal against every topic of a stream and the platform topics, write
  and read, allowed exactly where the table says (what it does not grant is refused);
- the denials the issue names, consumer groups and transactional ids, and a grant that turns a
  denial into access.

Kafka tier only; without Java and Maven it skips unless ``EDDY_REQUIRE_KAFKA=1``. The services test
runs first: the matrix writes probe bytes into the shared platform topics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, PLATFORM_TOPICS, StreamTopics
from eddy.kafka.acls import PRINCIPALS, Principal, principal, topic_names
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.kafka.transactions import transactional_id
from eddy.stack.kafka_security import start_secure_kafka

from tests.conftest import broker_tiers, skip_without_kafka
from tests.helpers import log_records, read_topic, sample_events, sample_labels, service, wait_until
from tests.kafka_secure import OK, REFUSED_READ, SecureEnv, contracts_for, probe_group, read_outcomes, write_outcomes

pytestmark = pytest.mark.integration

SERVICES = ["model_registry", "validation", "inference", "learning", "monitoring", "retraining", "ingestion"]
EVENTS = 200


@pytest.fixture(scope="module", params=["kafka"])
def env(
    request: pytest.FixtureRequest, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureEnv]:
    if "kafka" not in broker_tiers():
        pytest.skip("the kafka tier is not selected (EDDY_TEST_BROKERS, EDDY_BOOTSTRAP_SERVERS)")
    skip_without_kafka()
    root = tmp_path_factory.mktemp("kafka-acls")
    probe, served = f"p{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"
    kafka = start_secure_kafka(root / "kafka")
    try:
        base = Settings(
            bootstrap_servers=kafka.bootstrap_servers,
            schema_registry_url=registry_url,
            state_dir=root / "state",
            contracts_dir=contracts_for(root / "contracts", [probe, served]),
            streams=(probe, served),
            session_timeout_ms=6000,
            background_fetch_wait_max_ms=100,
            partitions=1,
            group_prefix=f"eddy-{served}",
        )
        kafka.apply_principals([probe, served], base.group_prefix)
        secured = SecureEnv(kafka, base)
        # The topics job's principal creates them all, as in a deployment.
        topics = [t for s in (probe, served) for t in StreamTopics(s).all()] + list(PLATFORM_TOPICS)
        ensure_topics(secured.as_role("topics job"), topics)
        yield secured
    finally:
        kafka.stop()


def probe_stream(env: SecureEnv) -> str:
    return env.base.streams[0]


def served_stream(env: SecureEnv) -> str:
    return env.base.streams[1]


def test_every_service_runs_the_pipeline_as_its_own_principal(env: SecureEnv, tmp_path: Path) -> None:
    stream = served_stream(env)
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
        r = httpx.post(f"{gateway}/v1/streams/{stream}/events", json=sample_events(0, EVENTS), timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == EVENTS, r.text
        viewer = env.as_role("viewer (user role)", kafka_transactions=True)
        predictions = read_committed(
            viewer, StreamTopics(stream).predictions, EVENTS, f"{viewer.group_prefix}-viewer-t"
        )
        assert {p["event_id"] for p in predictions} >= {f"ev{i}" for i in range(EVENTS)}
        r = httpx.post(f"{gateway}/v1/streams/{stream}/feedback", json=sample_labels(0, EVENTS), timeout=30)
        assert r.status_code == 200, r.text
        admin = env.as_user("admin", kafka_transactions=True)
        labeled = read_topic(admin, StreamTopics(stream).labeled, expect=EVENTS, timeout_s=60)
        assert len({x["event_id"] for x in labeled}) == EVENTS
        for url in urls.values():  # each still ready after the traffic
            assert httpx.get(f"{url}/healthz?ready=1", timeout=5).status_code == 200
    denied = [(log.name, record) for log in logs for record in authorization_failures(log)]
    assert not denied, denied
    print(f"seven services as seven principals: {time.monotonic() - started:.1f} s")


def authorization_failures(log: Path) -> list[dict]:
    """The log records of a service that mention a refusal by the broker's authorizer."""
    return [r for r in log_records(log) if "authorization failed" in str(r).lower().replace("_", " ")]


def test_a_service_run_as_another_principal_never_gets_ready_and_says_why(env: SecureEnv, tmp_path: Path) -> None:
    """Validation under the gateway's principal: it may not read S.events nor use validation's group."""
    settings = env.as_role("ingestion", streams=(served_stream(env),))
    with service("validation", settings, tmp_path) as (_, _, log):
        wait_until(lambda: authorization_failures(log), 30, what="an authorization failure in the log")
    # (Its /healthz?ready=1 still answers 200: the loop is ready once subscribed, before its first fetch.)


def read_committed(settings: Settings, topic: str, expect: int, group: str, timeout_s: float = 60.0) -> list[dict]:
    """Decode ``expect`` records of ``topic`` read in ``group`` (which the principal must be granted)."""
    from tests.helpers import serdes_for

    serde = serdes_for(settings).for_topic(topic)
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                error = msg.error()
                assert error is None or error.code() == KafkaError._PARTITION_EOF, error
                if error is None:
                    out.append(serde.decode(msg.value()))
        if out:  # the group is the viewer's: committing in it is granted
            consumer.commit(offsets=consumer.position(consumer.assignment()), asynchronous=False)
    finally:
        consumer.close()
    return out


def matrix_topics(env: SecureEnv) -> list[str]:
    return StreamTopics(probe_stream(env)).all() + list(PLATFORM_TOPICS)


def allowed(kinds: tuple[str, ...], stream: str) -> set[str]:
    return {t for k in kinds for t in topic_names(k, [stream])}


@pytest.mark.parametrize("who", PRINCIPALS, ids=lambda p: p.name)
def test_each_principal_writes_and_reads_exactly_what_the_table_grants(env: SecureEnv, who: Principal) -> None:
    topics = matrix_topics(env)
    stream = probe_stream(env)
    settings = env.as_user(who.name)
    # Read first: the write probe would give every readable topic a record, which it does not need.
    group = probe_group(who.groups[-1].replace("{prefix}", env.base.group_prefix)) if who.groups else "acl-probe"
    reads = read_outcomes(settings, topics, group)
    assert {t for t, o in reads.items() if o == OK} == allowed(who.reads, stream), reads
    refused = {o for o in reads.values() if o != OK}
    assert refused <= REFUSED_READ, reads
    if who.describes:  # it may see every topic, so each refusal is explicit
        assert refused <= {"TOPIC_AUTHORIZATION_FAILED"}, reads
    writes = write_outcomes(settings, topics)
    assert {t for t, o in writes.items() if o == OK} == allowed(who.writes, stream), writes
    if who.writes:  # a principal that may write nowhere cannot even get a producer id: a fatal error, not a topic's
        refused = {o for o in writes.values() if o != OK}
        assert refused <= {"TOPIC_AUTHORIZATION_FAILED"}, writes


@pytest.mark.parametrize(
    ("role", "kind"),
    [
        ("ingestion", "models"),  # the gateway's principal cannot publish a model
        ("inference", "labeled"),  # inference cannot forge training examples
        ("producer (user role)", "models"),
        ("validation", "models"),
        ("monitoring", "models"),
        ("retraining", "models"),
        ("inference", "models"),
    ],
)
def test_named_write_denials(env: SecureEnv, role: str, kind: str) -> None:
    topic = getattr(StreamTopics(probe_stream(env)), kind)
    assert write_outcomes(env.as_role(role), [topic]) == {topic: "TOPIC_AUTHORIZATION_FAILED"}


@pytest.mark.parametrize(
    "role", ["ingestion", "validation", "inference", "learning", "monitoring", "producer (user role)"]
)
def test_only_retraining_and_the_registry_touch_model_control(env: SecureEnv, role: str) -> None:
    outcomes = write_outcomes(env.as_role(role), [MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC])
    assert set(outcomes.values()) == {"TOPIC_AUTHORIZATION_FAILED"}, outcomes


def test_a_producer_reads_predictions_only_once_granted(env: SecureEnv) -> None:
    producer_role = principal("producer (user role)")
    settings = env.as_user(producer_role.name)
    topic = StreamTopics(probe_stream(env)).predictions
    group = f"{env.base.group_prefix}-producer-reader"
    assert read_outcomes(settings, [topic], group)[topic] in REFUSED_READ
    user = f"User:{producer_role.name}"
    grants = [
        AclBinding(
            ResourceType.TOPIC,
            topic,
            ResourcePatternType.LITERAL,
            user,
            "*",
            AclOperation.READ,
            AclPermissionType.ALLOW,
        ),
        AclBinding(
            ResourceType.GROUP,
            group,
            ResourcePatternType.LITERAL,
            user,
            "*",
            AclOperation.READ,
            AclPermissionType.ALLOW,
        ),
    ]
    env.kafka.grant(grants)
    try:
        # ACLs reach the broker's authorizer through the metadata log: allow a moment.
        wait_until(lambda: read_outcomes(settings, [topic], group, 5) == {topic: OK}, 20, what="the grant to apply")
        # And it may commit in the group it was granted, not in a service's.
        assert commit_error(settings, group, topic) is None
        assert commit_error(settings, f"{env.base.group_prefix}-inference", topic) == "GROUP_AUTHORIZATION_FAILED"
    finally:
        filters = [
            AclBindingFilter(
                g.restype, g.name, g.resource_pattern_type, g.principal, g.host, g.operation, g.permission_type
            )
            for g in grants
        ]
        admin = env.kafka.admin()
        for future in admin.delete_acls(filters).values():
            future.result()


def commit_error(settings: Settings, group: str, topic: str) -> str | None:
    """Commit offset 0 of ``topic``'s partition 0 in ``group``: None, or why not.

    A group the principal may not use fails before the commit: the coordinator lookup is refused
    (reported as a consumer error), and the commit gives up waiting for a coordinator.
    """
    consumer = Consumer(consumer_config(settings, group))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        return None
    except KafkaException as exc:
        reported = {m.error().name() for m in consumer.consume(10, 1.0) if m.error() and m.topic() is None}
        return "GROUP_AUTHORIZATION_FAILED" if "GROUP_AUTHORIZATION_FAILED" in reported else exc.args[0].name()
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("role", "group_of", "expected"),
    [
        ("validation", "validation", None),
        ("inference", "validation", "GROUP_AUTHORIZATION_FAILED"),
        ("learning", "model_registry", "GROUP_AUTHORIZATION_FAILED"),
        ("viewer (user role)", "monitoring", "GROUP_AUTHORIZATION_FAILED"),
    ],
)
def test_services_commit_only_in_their_own_group(
    env: SecureEnv, role: str, group_of: str, expected: str | None
) -> None:
    who = principal(role)
    topic = topic_names(who.reads[0], [probe_stream(env)])[0]
    assert commit_error(env.as_role(role), f"{env.base.group_prefix}-{group_of}", topic) == expected


def init_error(settings: Settings, tid: str) -> str | None:
    producer = Producer(producer_config(settings, **{"transactional.id": tid}))
    try:
        producer.init_transactions(20)
        return None
    except KafkaException as exc:
        return exc.args[0].name()


def test_transactional_ids_belong_to_their_service(env: SecureEnv) -> None:
    stream = probe_stream(env)
    prefix = env.base.group_prefix
    events = [StreamTopics(stream).events]
    own = transactional_id(f"{prefix}-validation", "acl-test", events)
    settings = env.as_role("validation")
    # A whole KIP-447 batch: the output and the input offsets in one transaction, as a stream loop runs it.
    consumer = Consumer(consumer_config(settings, f"{prefix}-validation"))
    consumer.assign([TopicPartition(events[0], 0, 0)])
    producer = Producer(producer_config(settings, **{"transactional.id": own}))
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce(StreamTopics(stream).validated, b"acl-probe", b"k")
    producer.send_offsets_to_transaction([TopicPartition(events[0], 0, 0)], consumer.consumer_group_metadata(), 20)
    producer.commit_transaction(20)
    consumer.close()
    # Another service's id, and any id for learning (its loop is never transactional), are refused.
    assert init_error(env.as_role("inference"), own) == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    learning_tid = transactional_id(f"{prefix}-learning", "acl-test", events)
    assert init_error(env.as_role("learning"), learning_tid) == "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    assert init_error(env.as_role("inference"), transactional_id(f"{prefix}-inference", "x", events)) is None


def test_a_side_reader_outside_its_group_prefix_is_refused_the_coordinator(env: SecureEnv) -> None:
    """Side readers never join their group, but librdkafka still asks for its coordinator: the prefixes matter."""
    topic = StreamTopics(probe_stream(env)).validated
    consumer = Consumer(consumer_config(env.as_role("inference"), f"eddy-scan-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    errors: set[str] = set()
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        errors = {m.error().name() for m in consumer.consume(10, 0.2) if m.error() and m.topic() is None}
    consumer.close()
    assert errors == {"GROUP_AUTHORIZATION_FAILED"}
