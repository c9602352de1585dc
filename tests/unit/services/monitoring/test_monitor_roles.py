"""The dashboard's roles follow the registry's alias table on eddy.model-events, not the contract's first model."""

from __future__ import annotations

from typing import Any

from eddy.ml.roles import ARCHIVED, CHAMPION, PROMOTED, ROLLED_BACK, SHADOW, StreamRoles, VersionKey, model_event
from eddy.services.monitoring.handlers import Monitor

from tests.records import demo_contract, labeled_example, record

V1, V2 = VersionKey("default", 1), VersionKey("default", 2)


def labeled(i: int, version: int) -> dict[str, Any]:
    return labeled_example(i, model_version=version)


def registry_event(event_type: str, key: VersionKey, aliases: dict[VersionKey, str]) -> dict[str, Any]:
    details = StreamRoles("demo", aliases, 0.1).to_details()
    return model_event("demo", key, event_type, "model_registry", details, alias=CHAMPION, at_ms=5)


def roles(monitor: Monitor) -> list[tuple[str, str]]:
    monitor.tick(10.0)
    return [(f"{m['model']}@{m['version']}", m["role"]) for m in monitor.document["models"]]


def test_roles_follow_promotions_and_rollbacks() -> None:
    monitor = Monitor(demo_contract(), clock=lambda: 10.0)
    # Both versions of the one model have labeled examples: the old champion and its shadow challenger.
    monitor([record("demo.labeled", labeled(i, 1 + i % 2), offset=i) for i in range(10)])
    assert roles(monitor) == [("default@1", CHAMPION), ("default@2", "unregistered")]

    monitor.on_model_event(registry_event("registered", V2, {V1: CHAMPION, V2: SHADOW}))
    assert roles(monitor) == [("default@1", CHAMPION), ("default@2", SHADOW)]

    monitor.on_model_event(registry_event(PROMOTED, V2, {V1: ARCHIVED, V2: CHAMPION}))
    assert roles(monitor) == [("default@2", CHAMPION), ("default@1", ARCHIVED)]
    assert monitor.document["markers"][-1]["kind"] == "promotion"

    monitor.on_model_event(registry_event(ROLLED_BACK, V1, {V1: CHAMPION, V2: ARCHIVED}))
    assert roles(monitor) == [("default@1", CHAMPION), ("default@2", ARCHIVED)]


def test_an_event_not_from_the_registry_changes_no_role() -> None:
    monitor = Monitor(demo_contract(), clock=lambda: 10.0)
    monitor([record("demo.labeled", labeled(i, 1 + i % 2), offset=i) for i in range(4)])
    forged = registry_event(PROMOTED, V2, {V1: ARCHIVED, V2: CHAMPION}) | {"actor": "someone"}
    monitor.on_model_event(forged)
    assert roles(monitor)[0] == ("default@1", CHAMPION)
