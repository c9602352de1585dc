"""The inference service's synchronous prediction API, against the real broker."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

from tests.helpers import create_topics, produce_values, read_topic, service, wait_until

pytestmark = pytest.mark.integration


@contextmanager
def predict_api(settings: Settings, tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The inference service and the base URL of its prediction API, once /healthz reports it."""
    with service("inference", settings, tmp_path, **env) as (proc, url, _log):

        def reported() -> bool:
            return "predict_url" in httpx.get(f"{url}/healthz", timeout=5).json()

        wait_until(reported, 30, 0.2, "predict_url in /healthz")
        yield proc, httpx.get(f"{url}/healthz", timeout=5).json()["predict_url"]


def events(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{prefix}{i}", "event_time_ms": 1_700_000_000_000 + i, "x0": i % 10, "x1": 2, "x2": 3}
        for i in range(n)
    ]


def test_predictions_are_answered_in_order_and_logged_to_kafka(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    with predict_api(settings, tmp_path) as (proc, base):
        post = f"{base}/v1/streams/{stream}/predict"
        one = httpx.post(post, json={"event_id": "one", "x0": 1, "x1": 2, "x2": 3}, timeout=30)
        assert one.status_code == 200, one.text
        (answer,) = one.json()["results"]
        assert answer["status"] == "predicted" and answer["event_id"] == "one"
        assert (answer["model_name"], answer["model_version"], answer["model_learned"]) == ("default", 1, 0)
        assert answer["prediction"] is not None and set(answer["probabilities"]) == {"false", "true"}

        anonymous = httpx.post(post, json={"x0": 1, "x1": 2, "x2": 3}, timeout=30).json()["results"][0]
        assert len(anonymous["event_id"]) == 36, "an event without an id gets a UUID"

        batch = httpx.post(post, json=events(5, "b"), timeout=30)
        assert batch.status_code == 200 and batch.json()["predicted"] == 5
        assert [r["event_id"] for r in batch.json()["results"]] == [f"b{i}" for i in range(5)]
        assert [r["index"] for r in batch.json()["results"]] == list(range(5))

        mixed = httpx.post(
            post, json=[*events(1, "m"), {"event_id": "bad", "x0": 11, "x1": 2, "x2": 3}, {"x0": "high"}], timeout=30
        )
        assert mixed.status_code == 207, mixed.text
        ok, too_high, not_a_number = mixed.json()["results"]
        assert ok["status"] == "predicted" and ok["event_id"] == "m0"
        assert too_high["status"] == "rejected"
        assert [(r["field"], r["rule"]) for r in too_high["reasons"]] == [("x0", "max")]
        assert "above the maximum" in too_high["reasons"][0]["message"]
        assert (
            not_a_number["reasons"][0]["rule"] == "schema"
            and "expected double" in not_a_number["reasons"][0]["message"]
        )

        invalid = httpx.post(post, json=[{"event_id": "bad2", "x0": -1, "x1": 2, "x2": 3}], timeout=30)
        assert invalid.status_code == 422 and invalid.json()["predicted"] == 0
        assert invalid.json()["results"][0]["reasons"][0]["rule"] == "min"

        # Requests at once take turns on the producer; each still gets its own answers.
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: httpx.post(post, json=events(20, f"c{i}-"), timeout=30), range(8)))
        assert all(a.status_code == 200 for a in answers)
        assert all(a.json()["results"][-1]["event_id"] == f"c{i}-19" for i, a in enumerate(answers))

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    expected = {"one", anonymous["event_id"], "m0"} | {f"b{i}" for i in range(5)}
    expected |= {f"c{i}-{j}" for i in range(8) for j in range(20)}
    logged = read_topic(settings, topics.predictions, expect=len(expected), timeout_s=20, decode=False)
    predictions = read_topic(settings, topics.predictions, expect=len(expected), timeout_s=20)
    assert {p["event_id"] for p in predictions} == expected and len(predictions) == len(expected)
    assert {(p["source_partition"], p["source_offset"]) for p in predictions} == {(-1, -1)}
    assert all(p["served"] and p["ingested_at_ms"] is not None for p in predictions)
    by_id = {p["event_id"]: p for p in predictions}
    assert by_id["b3"]["features"] == {"x0": 3.0, "x1": 2.0, "x2": 3.0}
    assert by_id["b3"]["event_time_ms"] == 1_700_000_000_003

    # A label keyed by the same event id lands in the same partition: the learner joins it like any other.
    produce_values(settings, topics.feedback, [{"event_id": "b3", "label": True, "label_time_ms": 1, "source": None}])
    (label,) = read_topic(settings, topics.feedback, expect=1, timeout_s=20, decode=False)
    (logged_b3,) = [m for m in logged if m.key() == b"b3"]
    assert label.partition() == logged_b3.partition()


def test_errors_api_keys_and_limits(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    env = {
        "EDDY_API_KEYS": "pk:producer,vk:viewer,ok:operator",
        "EDDY_INFERENCE_HTTP_MAX_BATCH": "10",
        "EDDY_INFERENCE_HTTP_MAX_BODY_BYTES": "8192",
    }
    with predict_api(settings, tmp_path, **env) as (proc, base):
        post = f"{base}/v1/streams/{stream}/predict"
        producer = {"X-API-Key": "pk"}
        assert httpx.post(post, json=events(1, "k"), timeout=10).status_code == 401
        assert httpx.post(post, json=events(1, "k"), headers={"X-API-Key": "nope"}, timeout=10).status_code == 401
        viewer = httpx.post(post, json=events(1, "k"), headers={"X-API-Key": "vk"}, timeout=10)
        assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]
        assert httpx.post(post, json=events(1, "p"), headers=producer, timeout=30).status_code == 200
        assert (
            httpx.post(post, json=events(1, "o"), headers={"Authorization": "Bearer ok"}, timeout=30).status_code == 200
        )

        unknown = httpx.post(f"{base}/v1/streams/nope/predict", json=events(1, "u"), headers=producer, timeout=10)
        assert unknown.status_code == 404 and stream in unknown.json()["error"]
        malformed = httpx.post(post, content=b"{not json", headers=producer, timeout=10)
        assert malformed.status_code == 400 and "not JSON" in malformed.json()["error"]
        too_many = httpx.post(post, json=events(11, "t"), headers=producer, timeout=10)
        assert too_many.status_code == 413 and "limit is 10" in too_many.json()["error"]
        too_big = httpx.post(post, json=[{"event_id": "x" * 10_000}], headers=producer, timeout=10)
        assert too_big.status_code == 413 and too_big.json()["status"] == 413
        assert httpx.get(post, headers=producer, timeout=10).status_code == 405

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    ids = {p["event_id"] for p in read_topic(settings, StreamTopics(stream).predictions, expect=2, timeout_s=20)}
    assert ids == {"p0", "o0"}, "refused requests log nothing"
