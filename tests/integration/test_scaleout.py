"""Inference scales out: two replicas in one consumer group share a 4-partition stream.

Two ``python -m eddy.services.inference`` processes join the group ``eddy-inference``
and split S.validated's four partitions; the learning service runs beside them.
Every event is predicted exactly once, by the replica that owns its partition,
and once the learner publishes a snapshot both replicas serve that same model.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

from tests.helpers import (
    assignment_changes,
    create_topics,
    current_assignment,
    latest_snapshot_learned,
    metric,
    produce_values,
    read_topic,
    sample_events,
    sample_labels,
    service,
    wait_until,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
FIRST_BATCH = 4_000
SECOND_BATCH = 400


def partitions_of(held: set[str], topic: str) -> set[int]:
    return {int(tp.rpartition(":")[2]) for tp in held if tp.rpartition(":")[0] == topic}


def of_model(predictions: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The predictions of ``model`` (challengers, if the contract has any, log theirs to the same topic)."""
    return [p for p in predictions if p["model_name"] == model]


def test_two_inference_replicas_share_partitions_and_serve_one_model(settings: Settings, tmp_path: Path) -> None:
    # create_topics, and the services, create every topic with the settings' partition count.
    settings = dataclasses.replace(settings, partitions=PARTITIONS)
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    contract = load_contracts(settings.contracts_dir, settings.streams)[stream]
    champion, models = contract.champion.name, len(contract.models)
    create_topics(settings)
    dirs = {name: tmp_path / name for name in ("a", "b", "learning")}
    for path in dirs.values():
        path.mkdir()

    with (
        service("inference", settings, dirs["a"]) as (_, url_a, log_a),
        service("inference", settings, dirs["b"]) as (_, url_b, log_b),
        service("learning", settings, dirs["learning"]),
    ):
        replicas = {"a": (url_a, log_a), "b": (url_b, log_b)}

        def owned() -> dict[str, set[int]]:
            return {r: partitions_of(current_assignment(log), topics.validated) for r, (_, log) in replicas.items()}

        def split() -> bool:
            a, b = owned().values()
            return bool(a and b) and a.isdisjoint(b) and a | b == set(range(PARTITIONS))

        # Produce only once the group has settled: a rebalance mid-run would replay an uncommitted batch.
        wait_until(split, 60, what="the replicas to split the partitions")
        ownership = owned()
        changes_before = {r: len(assignment_changes(log)) for r, (_, log) in replicas.items()}

        produce_values(settings, topics.validated, sample_events(0, FIRST_BATCH))
        read_topic(settings, topics.predictions, expect=FIRST_BATCH * models, timeout_s=90)
        predictions = of_model(read_topic(settings, topics.predictions, timeout_s=30, quiet_s=2), champion)

        counts = Counter(p["event_id"] for p in predictions)
        duplicated = {e: n for e, n in counts.items() if n > 1}
        assert set(counts) == {f"ev{i}" for i in range(FIRST_BATCH)}
        assert not duplicated, f"{len(duplicated)} events predicted more than once, e.g. {sorted(duplicated)[:5]}"
        assert all(p["served"] for p in predictions)
        assert {r: len(assignment_changes(log)) for r, (_, log) in replicas.items()} == changes_before, (
            "the group rebalanced while the batch ran"
        )

        # Each replica predicted exactly the events of the partitions it owns, and both did some.
        by_partition = Counter(p["source_partition"] for p in predictions)
        for replica, (url, _) in replicas.items():
            served = metric(url, "eddy_predictions_total", stream=stream, model=champion)
            expected = sum(by_partition[p] for p in ownership[replica])
            assert served == expected > 0, f"replica {replica} served {served}, its partitions hold {expected}"
            consumed = metric(url, "eddy_records_in_total", service="inference", topic=topics.validated)
            assert consumed == expected

        # Labels for every event: the learner learns them all and publishes a snapshot both replicas swap in.
        produce_values(settings, topics.feedback, sample_labels(0, FIRST_BATCH))
        wait_until(
            lambda: latest_snapshot_learned(settings, stream, champion) == FIRST_BATCH,
            90,
            interval_s=1,
            what=f"a snapshot with {FIRST_BATCH} labels learned",
        )
        for replica, (url, _) in replicas.items():
            wait_until(
                lambda url=url: metric(url, "eddy_snapshot_learned", stream=stream, model=champion) == FIRST_BATCH,
                30,
                what=f"replica {replica} serving the {FIRST_BATCH}-label snapshot",
            )
        # Both report the same lineage in /healthz too.
        serving = [httpx.get(f"{url}/healthz", timeout=5).json()["serving"] for url, _ in replicas.values()]
        assert serving[0] == serving[1] and serving[0][f"{stream}/{champion}"] == {
            "version": 1,
            "learned": FIRST_BATCH,
            "alias": "champion",
        }

        # A second batch: whichever replica answers, the answer comes from the same model.
        produce_values(settings, topics.validated, sample_events(FIRST_BATCH, SECOND_BATCH))
        total = FIRST_BATCH + SECOND_BATCH
        read_topic(settings, topics.predictions, expect=total * models, timeout_s=60)
        second: list[dict[str, Any]] = [
            p
            for p in of_model(read_topic(settings, topics.predictions, timeout_s=30, quiet_s=2), champion)
            if int(p["event_id"][2:]) >= FIRST_BATCH
        ]
        assert sorted(p["event_id"] for p in second) == sorted(f"ev{i}" for i in range(FIRST_BATCH, total))
        by_replica = {
            replica: {(p["model_version"], p["model_learned"]) for p in second if p["source_partition"] in parts}
            for replica, parts in ownership.items()
        }
        assert by_replica["a"] and by_replica["b"], f"a replica served none of the second batch: {by_replica}"
        assert by_replica["a"] == by_replica["b"] == {(1, FIRST_BATCH)}, by_replica
        for replica, (url, _) in replicas.items():
            served = metric(url, "eddy_predictions_total", stream=stream, model=champion, version="1")
            assert served == sum(1 for p in [*predictions, *second] if p["source_partition"] in ownership[replica])
