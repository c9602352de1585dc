"""The ingestion service's HTTP contract and its Kafka bridge, against the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.runtime.dlq import read_dlq_headers

from tests.helpers import create_topics, produce_raw, read_topic, service

pytestmark = pytest.mark.integration


def events(n: int, prefix: str = "i") -> list[dict[str, object]]:
    return [{"event_id": f"{prefix}{i}", "x0": 1, "x1": 2, "x2": 3} for i in range(n)]


def test_api_keys_roles_limits_and_openapi(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    env = {"EDDY_API_KEYS": "pk:producer,vk:viewer,ok:operator", "EDDY_INGEST_MAX_BATCH": "10"}
    with service("ingestion", settings, tmp_path, **env) as (_, url, _log):
        post = f"{url}/v1/streams/{stream}/events"
        assert httpx.post(post, json=events(1)).status_code == 401
        assert httpx.post(post, json=events(1), headers={"X-API-Key": "nope"}).status_code == 401
        forbidden = httpx.post(post, json=events(1), headers={"X-API-Key": "vk"})
        assert forbidden.status_code == 403 and "viewer" in forbidden.json()["error"]
        assert httpx.post(post, json=events(1, "a"), headers={"X-API-Key": "pk"}).status_code == 200
        assert httpx.post(post, json=events(1, "b"), headers={"Authorization": "Bearer ok"}).status_code == 200
        too_many = httpx.post(post, json=events(11), headers={"X-API-Key": "pk"})
        assert too_many.status_code == 413 and "limit is 10" in too_many.json()["error"]
        rejected = httpx.post(post, json=[{"x0": "no"}], headers={"X-API-Key": "pk"})
        assert rejected.status_code == 422 and rejected.json()["results"][0]["status"] == "rejected"
        spec = httpx.get(f"{url}/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert {"/v1/streams/{stream}/events", "/v1/streams/{stream}/feedback"} <= set(spec["paths"])
        assert {"401", "403", "404", "413", "422", "429"} <= set(
            spec["paths"]["/v1/streams/{stream}/events"]["post"]["responses"]
        )
        assert f"{stream}Event" in spec["components"]["schemas"]


def test_duplicates_within_the_window_are_acknowledged_once(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("ingestion", settings, tmp_path) as (_, url, _log):
        post = f"{url}/v1/streams/{stream}/events"
        first = httpx.post(post, json=events(5, "d"), timeout=10).json()
        assert first["accepted"] == 5 and first["duplicates"] == 0
        again = httpx.post(post, json=events(5, "d") + events(1, "new"), timeout=10).json()
        assert again["duplicates"] == 5
        assert [r["status"] for r in again["results"]] == ["duplicate"] * 5 + ["accepted"]
        twice_in_one = httpx.post(post, json=events(1, "x") * 2, timeout=10).json()
        assert [r["status"] for r in twice_in_one["results"]] == ["accepted", "duplicate"]
    ids = [e["event_id"] for e in read_topic(settings, StreamTopics(stream).events, timeout_s=20, quiet_s=1.5)]
    assert sorted(ids) == sorted([f"d{i}" for i in range(5)] + ["new0", "x0"])


def test_full_producer_queue_refuses_the_whole_request_with_429(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("ingestion", settings, tmp_path, EDDY_INGEST_QUEUE_MAX="50") as (_, url, _log):
        busy = httpx.post(f"{url}/v1/streams/{stream}/events", json=events(100, "q"), timeout=10)
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
        ok = httpx.post(f"{url}/v1/streams/{stream}/events", json=events(40, "q"), timeout=10)
        assert ok.status_code == 200
    ids = {e["event_id"] for e in read_topic(settings, StreamTopics(stream).events, timeout_s=20, quiet_s=1.5)}
    assert ids == {f"q{i}" for i in range(40)}, "nothing of the refused request may have been produced"


def test_kafka_bridge_converts_raw_json_and_dead_letters_the_rest(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    good = [json.dumps({"event_id": f"r{i}", "x0": i % 10, "x1": 1, "x2": 2}).encode() for i in range(20)]
    bad = [b"{not json", json.dumps([1, 2]).encode(), json.dumps({"x0": "high"}).encode(), b""]
    produce_raw(settings, topics.raw, [(None, v) for v in good + bad])
    with service("ingestion", settings, tmp_path):
        converted = read_topic(settings, topics.events, expect=20, timeout_s=30)
        dlq = read_topic(settings, topics.dlq, expect=4, timeout_s=30, decode=False)
    assert sorted(e["event_id"] for e in converted) == sorted(f"r{i}" for i in range(20))
    assert all(isinstance(e["x0"], float) for e in converted)
    reasons = sorted(read_dlq_headers(m.headers())["reason"] for m in dlq)
    assert reasons == ["rejected", "undecodable", "undecodable", "undecodable"]
    assert {m.value() for m in dlq} >= {b"{not json", b'{"x0": "high"}'}
