"""The Kafka principals table: consistent with the services, least privilege where it matters, and documented."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
from eddy.core.settings import REPO_ROOT
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, PLATFORM_DLQ_TOPIC
from eddy.kafka.acls import PRINCIPALS, Principal, acl_bindings, all_bindings, principal, principals_markdown
from eddy.runtime.service import NOT_TRANSACTIONAL

SERVICES = ["ingestion", "validation", "inference", "learning", "monitoring", "retraining", "model_registry"]


def services() -> list[Principal]:
    return [principal(name) for name in SERVICES]


def test_every_service_has_its_own_principal() -> None:
    names = [p.name for p in PRINCIPALS]
    assert len(names) == len(set(names))
    on_disk = {d.name for d in (REPO_ROOT / "shared/eddy/services").iterdir() if (d / "__main__.py").exists()}
    # eddy's schema registry keeps its journal on disk, not in Kafka: it needs no principal.
    assert on_disk - {"schema_registry"} == set(SERVICES)


def test_each_service_reads_in_its_own_group_and_uses_transactions_unless_it_never_does() -> None:
    for who in services():
        assert who.groups[0] == f"{{prefix}}-{who.role}"
        if who.role in NOT_TRANSACTIONAL:
            assert who.transactional_ids == ()
        else:
            assert who.transactional_ids == (f"{{prefix}}-{who.role}.*",)


def test_who_may_write_what_carries_pickles_or_decides_promotions() -> None:
    def writers(topic: str) -> set[str]:
        return {p.role for p in PRINCIPALS if topic in p.writes}

    assert writers("S.models") == {"learning", "model_registry"}
    assert writers(MODEL_CANDIDATES_TOPIC) == {"retraining"}
    assert writers(MODEL_EVENTS_TOPIC) == {"retraining", "model_registry"}
    assert writers("S.labeled") == {"learning"}
    assert writers("S.predictions") == {"inference"}


def test_every_loop_may_dead_letter_what_it_reads() -> None:
    # The registry reads S.models in a side feed only; its loop reads platform topics.
    for who in services():
        if who.role != "model_registry":
            assert "S.dlq" in who.writes, who.role
    for role in ("retraining", "model_registry"):  # their loops read platform topics
        assert PLATFORM_DLQ_TOPIC in principal(role).writes


def test_the_user_roles_are_narrow() -> None:
    producer, viewer = principal("producer (user role)"), principal("viewer (user role)")
    assert producer.reads == () and producer.groups == () and not producer.describes
    assert set(producer.writes) == {"S.raw", "S.events", "S.feedback"}
    assert viewer.writes == () and "S.predictions" in viewer.reads
    assert not any(p.creates for p in PRINCIPALS if p.role != "topics job")


def test_bindings_only_allow_and_name_no_wildcard() -> None:
    bindings = all_bindings(["demo", "fraud"], "eddy")
    assert bindings
    for b in bindings:
        assert b.permission_type == AclPermissionType.ALLOW
        assert b.operation not in (AclOperation.ALL, AclOperation.ANY)
        assert b.name and b.name != "*" and b.principal.startswith("User:eddy-")
        assert b.restype in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)
        if b.resource_pattern_type == ResourcePatternType.PREFIXED:
            assert b.name.endswith((".", "-")), b  # a prefix ends at a separator: "demo." never covers "demo2."


def test_bindings_follow_the_group_prefix_and_streams() -> None:
    names = {(b.restype, b.name) for b in acl_bindings(principal("validation"), ["fraud"], "acme")}
    assert (ResourceType.GROUP, "acme-validation") in names
    assert (ResourceType.TRANSACTIONAL_ID, "acme-validation.") in names
    assert (ResourceType.TOPIC, "fraud.validated") in names
    with pytest.raises(ValueError, match="at least one stream"):
        acl_bindings(principal("validation"), [])


def test_a_row_naming_an_unknown_topic_is_refused() -> None:
    with pytest.raises(ValueError, match=r"neither S\.KIND nor a platform topic"):
        Principal("x", "x", reads=("demo.events",))


def test_operations_md_shows_the_table_as_the_code_has_it() -> None:
    doc = (REPO_ROOT / "docs/operations.md").read_text()
    assert principals_markdown() in doc, (
        "regenerate it: python -c 'from eddy.kafka.acls import *; print(principals_markdown())'"
    )
