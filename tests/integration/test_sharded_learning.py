"""Sharded learning on a broker (issue 23, point 2): two learning processes share a model's two shards.

A stream of 4 partitions whose model learns in 2 shards (``learning: {mode: sharded, shards: 2}``) runs
two ``python -m eddy.services.learning`` processes (``EDDY_LEARNING_PROCESSES=2``) beside inference.
Each process learns only its shard's labels (partitions p with p % 2 == its index), each shard's model
is river's, trained on exactly that shard's labels in order, and inference answers every event with
its partition's shard's model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from eddy.contracts.learning import murmur2
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.ml.models import build_estimator, load_snapshot_estimator

from tests.helpers import (
    create_topics,
    metric,
    produce_values,
    read_topic,
    sample_events,
    sample_labels,
    service,
    wait_until,
)

pytestmark = pytest.mark.integration

PARTITIONS, SHARDS, EVENTS = 4, 2, 400


def sharded(settings: Settings) -> Any:
    """The test stream's contract, its model learning in SHARDS shards; the model's spec."""
    (stream,) = settings.streams
    path = settings.contracts_dir / f"{stream}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["models"][0]["learning"] = {"mode": "sharded", "shards": SHARDS}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_contracts(settings.contracts_dir, settings.streams)[stream].champion


def partition_of(event_id: str) -> int:
    return murmur2(event_id.encode()) % PARTITIONS


def learned(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/healthz", timeout=5).json().get("learned_by_model", {})


def test_two_learning_processes_each_learn_their_shard_and_inference_routes_by_shard(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.partitions == PARTITIONS
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    spec = sharded(settings)
    create_topics(settings)
    dirs = {name: tmp_path / name for name in ("inference", "learning-0", "learning-1")}
    for path in dirs.values():
        path.mkdir()
    events = sample_events(0, EVENTS)
    labels = {label["event_id"]: label for label in sample_labels(0, EVENTS)}
    processes = {"EDDY_LEARNING_PROCESSES": str(SHARDS)}
    with (
        service("inference", settings, dirs["inference"]) as (_, inference, _),
        service("learning", settings, dirs["learning-0"], EDDY_LEARNING_PROCESS="0", **processes) as (_, url0, _),
        service("learning", settings, dirs["learning-1"], EDDY_LEARNING_PROCESS="1", **processes) as (_, url1, _),
    ):
        urls = [url0, url1]
        produce_values(settings, topics.validated, events)
        predictions = read_topic(settings, topics.predictions, expect=EVENTS, timeout_s=60)
        # The producers' partitioner is murmur2 of the key, and the shard of partition p is p % 2.
        assert all(p["source_partition"] == partition_of(p["event_id"]) for p in predictions)
        assert all(p["shard"] == p["source_partition"] % SHARDS for p in predictions)
        # Every prediction read by the learner of its shard (a label read first would wait, joined in prediction order).
        wait_until(
            lambda: sum(metric(u, "eddy_records_in_total", topic=topics.predictions) or 0 for u in urls) == EVENTS,
            30,
            interval_s=0.2,
            what="the learners to read every prediction",
        )

        # Labels of partitions 0 and 1 first, then of 2 and 3: each shard reads one partition at a time, so the
        # order it learns in is the order of the labels of its partitions.
        order: dict[int, list[str]] = {0: [], 1: []}
        for partitions in ((0, 1), (2, 3)):
            batch = [labels[e["event_id"]] for e in events if partition_of(e["event_id"]) in partitions]
            produce_values(settings, topics.feedback, batch)
            for label in batch:
                order[partition_of(label["event_id"]) % SHARDS].append(label["event_id"])
            expected = {s: len(ids) for s, ids in order.items()}
            wait_until(
                lambda expected=expected: [sum(learned(u).values()) for u in urls] == [expected[0], expected[1]],
                30,
                interval_s=0.2,
                what=f"the learners to learn {expected} labels",
            )
        # Each process runs only its own shard's learner.
        assert learned(url0) == {f"{stream}/default@1#0": len(order[0])}
        assert learned(url1) == {f"{stream}/default@1#1": len(order[1])}
        labeled = read_topic(settings, topics.labeled, expect=EVENTS, timeout_s=30)
        assert Counter(x["shard"] for x in labeled) == Counter({s: len(ids) for s, ids in order.items()})

        # Each shard's model is river's on exactly its shard's labels, in order.
        features = {p["event_id"]: p["features"] for p in predictions}
        rivers = []
        for shard in range(SHARDS):
            river = build_estimator(spec)
            for event_id in order[shard]:
                river.learn_one(features[event_id], labels[event_id]["label"])
            rivers.append(river)
        wait_until(
            lambda: (
                sorted(
                    (s["shard"], s["learned_count"])
                    for s in read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
                    if s["learned_count"] == len(order[s["shard"]])
                )[-2:]
                == [(0, len(order[0])), (1, len(order[1]))]
            ),
            30,
            what="each shard's snapshot with all its labels",
        )
        snapshots = {
            s["shard"]: s
            for s in read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
            if s["learned_count"] == len(order[s["shard"]])
        }
        probe = [{"x0": float(i), "x1": float(9 - i), "x2": 5.0} for i in range(10)]
        for shard, river in enumerate(rivers):
            model = load_snapshot_estimator(snapshots[shard], settings.keyring())
            assert [model.predict_proba_one(x) for x in probe] == [river.predict_proba_one(x) for x in probe]

        # Inference answers each new event with its shard's model, as far as that shard has learned.
        final = [len(order[0]), len(order[1])]
        wait_until(
            lambda: (
                httpx.get(f"{inference}/healthz", timeout=5).json()["serving"][f"{stream}/default"].get("shards")
                == final
            ),
            30,
            what=f"inference serving shards that learned {final}",
        )
        more = sample_events(EVENTS, 100)
        produce_values(settings, topics.validated, more)
        later = [
            p
            for p in read_topic(settings, topics.predictions, expect=EVENTS + 100, timeout_s=30)
            if int(p["event_id"][2:]) >= EVENTS
        ]
        assert len(later) == 100
        for p in later:
            shard = p["source_partition"] % SHARDS
            assert (p["shard"], p["model_learned"]) == (shard, final[shard])
            # Inference predicts a batch at once (eddy.ml.models.predict_batch): the same model, to the last bits.
            expected = {str(k).lower(): v for k, v in rivers[shard].predict_proba_one(p["features"]).items()}
            assert p["probabilities"] == pytest.approx(expected, rel=1e-12)
