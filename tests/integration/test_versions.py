"""Model versions through the real inference and learning services, driven by registry-shaped events.

The model registry's two outputs are all inference and learning need: a
version's starting snapshot on S.models and the alias table on
eddy.model-events. Here a test writes them, so that this checks the followers
alone: a registered challenger answers its canary share and learns from the
point it joined, a promotion switches the answers within 2 s, an archived
version stops predicting, and a rollback to it revives it as it last served.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_EVENTS_TOPIC, StreamTopics
from eddy.ml.models import ModelState
from eddy.ml.roles import ARCHIVED, CHALLENGER, CHAMPION, PROMOTED, REGISTERED, ROLLED_BACK, SHADOW, VersionKey

from tests.helpers import (
    create_topics,
    latest_snapshot_learned,
    produce_values,
    read_topic,
    sample_events,
    sample_labels,
    service,
    wait_until,
)
from tests.records import demo_contract, registry_fact

pytestmark = pytest.mark.integration

V1, V2 = VersionKey("default", 1), VersionKey("default", 2)


def trained_snapshot(settings: Settings, stream: str) -> dict:
    """Version 2 as the registry publishes it: trained elsewhere, no online offsets yet."""
    state = ModelState.fresh(stream, demo_contract().champion, version=2)
    for event, label in zip(sample_events(0, 300), sample_labels(0, 300), strict=True):
        state.estimator.learn_one({k: event[k] for k in ("x0", "x1", "x2")}, label["label"])
    state.learned_count = 300
    return state.to_snapshot_record(settings.keyring(), "test")


def served_by(settings: Settings, stream: str, ids: set[str]) -> Counter[str]:
    predictions = read_topic(settings, StreamTopics(stream).predictions, timeout_s=10, quiet_s=1)
    return Counter(
        f"{p['model_name']}@{p['model_version']}" for p in predictions if p["served"] and p["event_id"] in ids
    )


def test_registered_promoted_and_archived_versions_are_followed(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    with service("learning", settings, tmp_path), service("inference", settings, tmp_path):
        produce_values(settings, topics.validated, sample_events(0, 100))
        produce_values(settings, topics.feedback, sample_labels(0, 100))
        wait_until(lambda: latest_snapshot_learned(settings, stream) == 100, 30, what="version 1 to learn")
        produce_values(settings, topics.models, [trained_snapshot(settings, stream)], key_field="model_name")
        produce_values(
            settings,
            MODEL_EVENTS_TOPIC,
            [registry_fact(stream, V2, REGISTERED, {V1: CHAMPION, V2: CHALLENGER}, 0.5, alias=CHALLENGER)],
            key_field="stream",
        )

        # The challenger answers about half the events (by hash of event_id); every event is answered once.
        batches = iter(range(1000, 10_000, 200))

        def canary_serving() -> bool:
            first = next(batches)
            produce_values(settings, topics.validated, sample_events(first, 200))
            served = served_by(settings, stream, {f"ev{i}" for i in range(first, first + 200)})
            if served.total() == 200 and 40 < served["default@2"] < 160:
                canary.append(first)
                return True
            return False

        canary: list[int] = []
        wait_until(canary_serving, 30, interval_s=1, what="the challenger to answer its canary share")

        # Both versions learn from the labels of their own predictions; v2 records where it joined.
        first = canary[0]
        produce_values(settings, topics.feedback, sample_labels(first, 200))
        ids = {f"ev{i}" for i in range(first, first + 200)}

        def both_labeled() -> list[dict]:
            return [x for x in read_topic(settings, topics.labeled, timeout_s=10, quiet_s=1) if x["event_id"] in ids]

        wait_until(lambda: len(both_labeled()) >= 400, 30, what="labeled examples of both versions")
        by_version = Counter((x["model_version"], x["served"]) for x in both_labeled())
        assert by_version[(2, True)] + by_version[(1, True)] == 200, by_version
        assert by_version[(2, True)] + by_version[(2, False)] == 200, by_version

        def learned_v2() -> bool:
            snapshots = read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
            return any(s["model_version"] == 2 and s["learned_count"] > 300 and s["source_offsets"] for s in snapshots)

        wait_until(learned_v2, 30, interval_s=1, what="learning to publish version 2 after learning online")
        snapshots = read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
        joined = next(s for s in snapshots if s["model_version"] == 2 and s["source_offsets"])
        assert joined["learned_from_offsets"], "a joining version records where its online learning began"

        # A promotion is served within 2 s.
        promoted = registry_fact(stream, V2, PROMOTED, {V1: SHADOW, V2: CHAMPION}, alias=CHAMPION)
        produce_values(settings, MODEL_EVENTS_TOPIC, [promoted], key_field="stream")
        sent = time.monotonic()
        time.sleep(2.0)
        produce_values(settings, topics.validated, sample_events(20_000, 100))
        assert served_by(settings, stream, {f"ev{i}" for i in range(20_000, 20_100)}) == {"default@2": 100}
        assert time.monotonic() - sent < 30

        # An archived version stops predicting.
        archived = registry_fact(stream, V1, "archived", {V1: ARCHIVED, V2: CHAMPION}, alias=ARCHIVED)
        produce_values(settings, MODEL_EVENTS_TOPIC, [archived], key_field="stream")
        time.sleep(2.0)
        produce_values(settings, topics.validated, sample_events(30_000, 50))
        predictions = read_topic(settings, topics.predictions, timeout_s=10, quiet_s=1)
        late = Counter(p["model_version"] for p in predictions if p["event_id"].startswith("ev300"))
        assert late == {2: 50}, late

        # A rollback revives it within 2 s, with what it had learned (inference kept it), and it learns again.
        v1_learned = max(s["learned_count"] for s in read_topic(settings, topics.models) if s["model_version"] == 1)
        revived = registry_fact(stream, V1, ROLLED_BACK, {V1: CHAMPION, V2: ARCHIVED}, alias=CHAMPION)
        produce_values(settings, MODEL_EVENTS_TOPIC, [revived], key_field="stream")
        time.sleep(2.0)
        produce_values(settings, topics.validated, sample_events(40_000, 50))
        assert served_by(settings, stream, {f"ev{i}" for i in range(40_000, 40_050)}) == {"default@1": 50}
        produce_values(settings, topics.feedback, sample_labels(40_000, 50))

        def v1_learns_again() -> bool:
            snapshots = read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
            return any(s["model_version"] == 1 and s["learned_count"] >= v1_learned + 50 for s in snapshots)

        wait_until(v1_learns_again, 30, interval_s=1, what="the revived version 1 to go on learning")
