"""The model registry service against the real broker: candidates, REST changes, restarts, kill -9."""

from __future__ import annotations

import hashlib
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, StreamTopics
from eddy.ml.models import build_estimator
from eddy.ml.roles import (
    CHALLENGER,
    CHAMPION,
    PROMOTED,
    PROMOTION_REQUESTED,
    REGISTERED,
    REQUEST_REFUSED,
    SHADOW,
    SYNCED,
    StreamRoles,
    VersionKey,
    event_details,
    model_event,
    roles_of_event,
)
from eddy.runtime.dlq import read_dlq_headers
from eddy.services.model_registry.artifacts import ArtifactStore
from eddy.services.model_registry.config import RegistryConfig
from eddy.services.model_registry.store import Store
from eddy.stack.brokers import start_broker

from tests.helpers import ValueWriter, create_topics, read_topic, service, wait_until

pytestmark = pytest.mark.integration


def candidate(settings: Settings, n: int, alias: str = CHALLENGER, estimator: Any = None) -> dict[str, Any]:
    """A candidate of the stream's champion model, signed with the stack's keyring (a fresh one by default)."""
    (stream,) = settings.streams
    spec = load_contracts(settings.contracts_dir, settings.streams)[stream].champion
    artifact = pickle.dumps(build_estimator(spec) if estimator is None else estimator)
    return {
        "candidate_id": f"{stream}-cand-{n}",
        "stream": stream,
        "model_name": spec.name,
        "parent_version": 1,
        "spec": spec.to_json(),
        "artifact": artifact,
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "signature": settings.keyring().sign(artifact),
        "learned_count": 300,
        "training_offsets": [{"topic": f"{stream}.labeled", "partition": 0, "first_offset": 0, "last_offset": 299}],
        "schema_ids": {},
        "metrics": '{"accuracy": 0.9}',
        "alias": alias,
        "code_version": "test",
        "created_by": "retraining",
        "created_at_ms": int(time.time() * 1000),
        "reason": "test",
    }


def events(settings: Settings, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    (stream,) = settings.streams
    return [e for e in read_topic(settings, MODEL_EVENTS_TOPIC, quiet_s=quiet_s) if e["stream"] == stream]


def snapshots(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings, StreamTopics(settings.streams[0]).models, quiet_s=1.0)


def wait_for_event(settings: Settings, what: str, test: Any, timeout_s: float = 30) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in events(settings, quiet_s=0.5) if test(e)]
        return bool(found)

    wait_until(seen, timeout_s, what=what)
    return found[-1]


def ready(url: str, stream: str) -> None:
    """Until the registry has finished starting (its API answers 503 before)."""
    wait_until(
        lambda: httpx.get(f"{url}/api/models", params={"stream": stream}, timeout=5).status_code == 200,
        40,
        0.2,
        "the registry API",
    )


def unpublished(config: RegistryConfig) -> int:
    store = Store(config.db_path)
    try:
        return len(store.unpublished())
    finally:
        store.close()


def table(event: dict[str, Any]) -> dict[str, str]:
    roles = roles_of_event(event)
    assert roles is not None
    return {str(k): a for k, a in roles.aliases.items()}


@pytest.fixture()
def empty_broker(settings: Settings, broker_kind: str, tmp_path: Path) -> Iterator[Settings]:
    """The same settings on a second, empty broker of the tier's kind: a restarted stack that lost every topic."""
    broker = start_broker("kafka" if broker_kind == "kafka" else "tansu", tmp_path / "empty-broker")
    try:
        fresh = replace(settings, bootstrap_servers=broker.bootstrap_servers)
        create_topics(fresh)
        yield fresh
    finally:
        broker.stop()


def test_candidates_promotion_requests_and_restart_on_an_empty_broker(
    settings: Settings, empty_broker: Settings, tmp_path: Path
) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("model_registry", settings, tmp_path) as (proc, url, _):
        ready(url, stream)
        first = wait_for_event(settings, "synced", lambda e: e["event_type"] == SYNCED)
        assert table(first) == {"default@1": CHAMPION}
        (snap,) = snapshots(settings)
        assert (snap["model_version"], snap["source_offsets"]) == (1, {})

        good = candidate(settings, 1)
        bad = {**candidate(settings, 2), "sha256": "0" * 64}
        ValueWriter(settings, MODEL_CANDIDATES_TOPIC, key_field="stream").send([good, bad, good])
        registered = wait_for_event(
            settings, "registered v2", lambda e: e["event_type"] == REGISTERED and e["model_version"] == 2
        )
        assert registered["alias"] == CHALLENGER and registered["actor"] == "model_registry"
        assert table(registered) == {"default@1": CHAMPION, "default@2": CHALLENGER}
        assert event_details(registered)["candidate_id"] == good["candidate_id"]
        wait_until(lambda: len(snapshots(settings)) == 2, 20, what="the snapshot of v2")
        v2 = next(s for s in snapshots(settings) if s["model_version"] == 2)
        assert v2["sha256"] == good["sha256"] and v2["learned_count"] == 300

        def dead() -> list[dict[str, str]]:
            letters = read_topic(settings, "eddy.dlq", decode=False, quiet_s=0.5)
            return [read_dlq_headers(m.headers()) for m in letters if m.key() == stream.encode()]

        wait_until(lambda: bool(dead()), 20, what="the bad candidate's dead letter")
        assert [d["reason"] for d in dead()] == ["checksum_mismatch"]

        started = time.monotonic()
        r = httpx.post(f"{url}/api/models/promote", json={"stream": stream, "version": "default@2"}, timeout=10)
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 2.0
        promoted = wait_for_event(settings, "promoted", lambda e: e["event_type"] == PROMOTED)
        assert table(promoted) == {"default@1": SHADOW, "default@2": CHAMPION}
        assert event_details(promoted)["previous"] == "default@1"

        stale = model_event(
            stream, VersionKey("default", 1), PROMOTION_REQUESTED, "retraining", {"expected_champion": "default@1"}
        )
        ValueWriter(settings, MODEL_EVENTS_TOPIC, key_field="stream").send([stale, stale])
        refused = wait_for_event(settings, "refused", lambda e: e["event_type"] == REQUEST_REFUSED)
        assert event_details(refused)["request"] == stale["event_id"]
        time.sleep(1.0)
        assert sum(e["event_type"] == REQUEST_REFUSED for e in events(settings)) == 1
        listed = httpx.get(f"{url}/api/models", params={"stream": stream}, timeout=5).json()
        assert [v["version"] for v in listed["versions"]] == ["default@1", "default@2"]  # the duplicate: once
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # Same state dir, a broker that lost everything: the table and the artifacts are published again.
    again = tmp_path / "again"
    again.mkdir()
    with service("model_registry", empty_broker, again) as (proc, url, _):
        ready(url, stream)
        synced = wait_for_event(empty_broker, "synced again", lambda e: e["event_type"] == SYNCED)
        assert table(synced) == {"default@1": SHADOW, "default@2": CHAMPION}
        assert all(e["event_type"] == SYNCED for e in events(empty_broker))
        wait_until(lambda: len(snapshots(empty_broker)) == 2, 20, what="artifacts republished")
        assert {s["model_version"] for s in snapshots(empty_broker)} == {1, 2}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_kill_9_during_promotions_leaves_one_champion_and_sound_artifacts(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    config = RegistryConfig.from_settings(settings, env={})
    replies: list[dict[str, Any]] = []
    with service("model_registry", settings, tmp_path) as (proc, url, _):
        ready(url, stream)
        writer = ValueWriter(settings, MODEL_CANDIDATES_TOPIC, key_field="stream")
        writer.send([candidate(settings, 1)])
        wait_until(
            lambda: len(httpx.get(f"{url}/api/models", params={"stream": stream}).json()["versions"]) == 2,
            30,
            0.2,
            "v2 registered",
        )
        stop = threading.Event()

        def promote_back_and_forth() -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                version = "default@2" if i % 2 == 0 else "default@1"
                try:
                    r = httpx.post(f"{url}/api/models/promote", json={"stream": stream, "version": version}, timeout=5)
                except httpx.HTTPError:
                    return  # killed
                if r.status_code == 200:
                    replies.append(r.json()["event"])

        thread = threading.Thread(target=promote_back_and_forth)
        thread.start()
        # Candidates too, so artifacts are being written when the kill lands.
        writer.send([candidate(settings, n, alias=SHADOW) for n in range(2, 12)])
        wait_until(lambda: len(replies) >= 20, 30, 0.05, "promotions under way")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stop.set()
        thread.join(10)

    store = Store(config.db_path)
    artifacts = ArtifactStore(config.artifacts_dir, settings.keyring())
    assert store.check() == {stream: 1}
    assert all(artifacts.verify(row.sha256) for row in store.versions(stream))
    decided = {a["event_id"] for a in store.audit(stream, limit=100_000) if a["event_type"] == PROMOTED}
    assert {e["event_id"] for e in replies} <= decided  # every answered promotion is recorded
    champion = StreamRoles(stream, store.aliases(stream)).champion
    store.close()

    # A restart publishes what the kill left in the outbox: every decision reaches Kafka.
    again = tmp_path / "again"
    again.mkdir()
    with service("model_registry", settings, again) as (proc, url, _):
        ready(url, stream)
        wait_until(lambda: not unpublished(config), 20, 0.2, "the outbox published")
        published = {e["event_id"] for e in events(settings) if e["event_type"] == PROMOTED}
        assert decided <= published
        listed = httpx.get(f"{url}/api/models", params={"stream": stream}, timeout=5).json()
        assert listed["champion"] == str(champion)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
