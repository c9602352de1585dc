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
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
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
from eddy.history.reader import Unauthorized, start_up_records
from eddy.kafka.acls import PRINCIPALS, Principal, principal, topic_names
from eddy.kafka.client import admin_client, consumer_config, producer_config
from eddy.kafka.transactions import transactional_id

from tests.helpers import service, wait_until
from tests.kafka_secure import (
    OK,
    REFUSED_READ,
    SecureEnv,
    authorization_failures,
    probe_group,
    read_outcomes,
    run_pipeline_as_principals,
    secure_env,
    skip_unless_kafka_tier,
    write_outcomes,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["kafka"])
def env(
    request: pytest.FixtureRequest, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureEnv]:
    skip_unless_kafka_tier()
    with secure_env(tmp_path_factory.mktemp("kafka-acls"), "SASL_PLAINTEXT", registry_url, 2) as env:
        yield env


def probe_stream(env: SecureEnv) -> str:
    """The stream the probes write bytes into; the services run on the other."""
    return env.base.streams[0]


def served_stream(env: SecureEnv) -> str:
    return env.base.streams[1]


def test_every_service_runs_the_pipeline_as_its_own_principal(env: SecureEnv, tmp_path: Path) -> None:
    seconds = run_pipeline_as_principals(env, served_stream(env), tmp_path)
    print(f"seven services as seven principals (SASL_PLAINTEXT): {seconds:.1f} s")


def test_a_service_run_as_another_principal_is_refused_and_says_why(env: SecureEnv, tmp_path: Path) -> None:
    """Validation under the gateway's principal: it may not read S.events nor use validation's group."""
    settings = env.as_role("ingestion", streams=(served_stream(env),))
    with service("validation", settings, tmp_path) as (_, url, log):
        wait_until(lambda: authorization_failures(log), 30, what="an authorization failure in the log")

        def not_ready() -> bool:
            answer = httpx.get(f"{url}/healthz", params={"ready": "1"}, timeout=5)
            return answer.status_code == 503 and answer.json()["status"] == "unauthorized"

        # Alive (not restarted in a loop) but not ready: a rollout does not count it, and /healthz says why.
        wait_until(not_ready, 30, what="readiness to say unauthorized")
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


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
    # A principal that may write nowhere cannot get an idempotent producer id at all (a fatal error, not a
    # topic's): its probe producer is a plain one, so that each topic answers for itself.
    writes = write_outcomes(settings, topics, idempotent=bool(who.writes))
    assert {t for t, o in writes.items() if o == OK} == allowed(who.writes, stream), writes
    assert {o for o in writes.values() if o != OK} <= {"TOPIC_AUTHORIZATION_FAILED"}, writes


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
    consumer = Consumer(consumer_config(env.as_role("inference"), f"eddy-history-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    errors: set[str] = set()
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        errors = {m.error().name() for m in consumer.consume(10, 0.2) if m.error() and m.topic() is None}
    consumer.close()
    assert errors == {"GROUP_AUTHORIZATION_FAILED"}


def test_a_history_read_the_acls_refuse_says_so_at_once(env: SecureEnv) -> None:
    """Refused a topic (the gateway reading S.profiles) or the group prefix (inference, which reads S.validated,
    under eddy-history-), the history reader raises the refusal instead of waiting for records that never come."""
    topics = StreamTopics(probe_stream(env))
    for role, topic, says in [
        ("ingestion", topics.profiles, "authorization failed"),
        ("inference", topics.validated, "Group authorization failed"),
    ]:
        started = time.monotonic()
        with pytest.raises(Unauthorized, match=f"not authorized: .*{says}"):
            list(start_up_records(env.as_role(role), [topic], 60))
        assert time.monotonic() - started < 15, role


def committed_lag_error(settings: Settings, group: str) -> str | None:
    """Read ``group``'s committed offsets as KEDA's scaler does: None, or the error's name."""
    admin = admin_client(settings)
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        for future in admin.list_consumer_group_offsets(request, request_timeout=15).values():
            future.result()
        return None
    except KafkaException as exc:
        return exc.args[0].name()


def test_keda_reads_the_lag_of_the_groups_it_scales_and_nothing_else(env: SecureEnv) -> None:
    keda = env.as_role("KEDA lag scaler")
    prefix = env.base.group_prefix
    assert committed_lag_error(keda, f"{prefix}-validation") is None
    assert committed_lag_error(keda, f"{prefix}-learning") == "GROUP_AUTHORIZATION_FAILED"
    topic = StreamTopics(probe_stream(env)).events
    assert read_outcomes(keda, [topic], f"{prefix}-validation")[topic] == "TOPIC_AUTHORIZATION_FAILED"
