"""Forged models against the running services: refused before unpickling, dead-lettered, counted; keys rotate live.

Each forged record carries a correct SHA-256 and a pickle that creates a marker file when loaded, as an attacker
with write access to ``S.models`` or ``eddy.model-candidates`` (anyone who reaches an unsecured broker) would
send. The proof of each refusal is that the marker never exists, and the dead letter that says why.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.core.settings import Settings
from eddy.core.signing import KEY_REMOVED, KEY_ROTATED, Keyring
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, StreamTopics
from eddy.ml.models import ModelState
from eddy.runtime.dlq import read_dlq_headers

from tests.conftest import service_env
from tests.helpers import (
    create_topics,
    latest_snapshot_learned,
    metric,
    produce_values,
    read_topic,
    sample_events,
    sample_labels,
    service,
    wait_until,
)
from tests.integration.test_model_registry import candidate
from tests.keys import forged_pickle
from tests.records import demo_contract

pytestmark = pytest.mark.integration


def dead_letters(settings: Settings, topic: str) -> list[dict[str, str]]:
    return [read_dlq_headers(m.headers()) for m in read_topic(settings, topic, decode=False, quiet_s=0.5)]


def snapshot(settings: Settings, stream: str, learned: int) -> dict[str, Any]:
    state = ModelState.fresh(stream, demo_contract().champion)
    state.learned_count = learned
    return state.to_snapshot_record(settings.keyring(), "test")


def forge(settings: Settings, record: dict[str, Any], marker: Path, signature: str | None) -> dict[str, Any]:
    """``record`` carrying a forged pickle with its correct SHA-256; signed with the key id eddy signs with, under
    a secret eddy does not hold, unless ``signature`` is given."""
    payload = forged_pickle(marker)
    forger = Keyring.generate(settings.keyring().current().active)
    signed = forger.sign(payload) if signature is None else signature
    return {**record, "artifact": payload, "sha256": hashlib.sha256(payload).hexdigest(), "signature": signed}


def serving_learned(url: str, stream: str) -> int:
    return int(httpx.get(f"{url}/healthz", timeout=5).json()["serving"][f"{stream}/default"]["learned"])


def test_inference_refuses_a_forged_snapshot_and_keeps_serving(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    marker = tmp_path / "pwned-by-snapshot"
    with service("inference", settings, tmp_path) as (_, url, _):
        genuine = snapshot(settings, stream, 100)
        forged = [
            forge(settings, snapshot(settings, stream, 200), marker, ""),
            forge(settings, snapshot(settings, stream, 300), marker, None),
        ]
        produce_values(settings, topics.models, [genuine, *forged], key_field="model_name")

        wait_until(lambda: len(dead_letters(settings, topics.dlq)) == 2, 30, what="two dead letters")
        letters = dead_letters(settings, topics.dlq)
        assert sorted(d["reason"] for d in letters) == ["bad_signature", "unsigned"]
        assert {d["stage"] for d in letters} == {"inference.snapshots"}
        assert all(d["source.topic"] == topics.models for d in letters)
        assert serving_learned(url, stream) == 100  # the genuine one, not the newer forged ones
        assert metric(url, "eddy_snapshots_refused_total", stream=stream, reason="bad_signature") == 1
        assert metric(url, "eddy_artifact_refusals_total", kind="snapshot") == 2
    assert not marker.exists()


def test_the_registry_refuses_a_forged_candidate(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    marker = tmp_path / "pwned-by-candidate"
    with service("model_registry", settings, tmp_path) as (_, url, _):
        forged = forge(settings, candidate(settings, 1), marker, None)
        unsigned = forge(settings, {**candidate(settings, 2)}, marker, "")
        produce_values(settings, MODEL_CANDIDATES_TOPIC, [forged, unsigned, candidate(settings, 3)], key_field="stream")

        def reasons() -> list[str]:
            return sorted(d["reason"] for d in dead_letters(settings, "eddy.dlq") if d.get("source.topic"))

        wait_until(lambda: len(reasons()) == 2, 30, what="the forged candidates' dead letters")
        assert reasons() == ["bad_signature", "unsigned"]
        wait_until(lambda: versions(url, stream) == [1, 2], 30, what="the genuine candidate registered as v2")
    assert not marker.exists()


def versions(url: str, stream: str) -> list[int]:
    doc = httpx.get(f"{url}/api/models", params={"stream": stream}, timeout=5).json()
    return sorted(v["number"] for v in doc["versions"])


def eddy_keys(settings: Settings, *args: str) -> str:
    env = service_env(settings)
    done = subprocess.run(
        [sys.executable, "-m", "eddy.cli.main", "keys", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_key_rotation_takes_effect_in_running_services_and_is_audited(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    old = settings.keyring().current().active
    with (
        service("model_registry", settings, tmp_path) as (_, registry, _),
        service("learning", settings, tmp_path),
        service("inference", settings, tmp_path) as (_, inference, _),
    ):
        produce_values(settings, topics.validated, sample_events(0, 100))
        produce_values(settings, topics.feedback, sample_labels(0, 100))
        wait_until(lambda: serving_learned(inference, stream) == 100, 40, what="inference to serve 100 labels")

        eddy_keys(settings, "rotate", "--key-id", "k-new", "--url", registry)
        produce_values(settings, topics.validated, sample_events(100, 100))
        produce_values(settings, topics.feedback, sample_labels(100, 100))

        def newest_signature() -> str:
            snapshots = read_topic(settings, topics.models, timeout_s=5, quiet_s=0.5)
            return max(snapshots, key=lambda s: s["learned_count"])["signature"]

        wait_until(lambda: latest_snapshot_learned(settings, stream) == 200, 40, what="learning 200 labels")
        assert newest_signature().startswith("v1:k-new:")
        wait_until(lambda: serving_learned(inference, stream) == 200, 20, what="inference to load the new key's model")

        eddy_keys(settings, "remove", old, "--url", registry)
        produce_values(settings, topics.validated, sample_events(200, 100))
        produce_values(settings, topics.feedback, sample_labels(200, 100))
        wait_until(lambda: serving_learned(inference, stream) == 300, 40, what="serving after the old key is gone")
        shown = json.loads(eddy_keys(settings, "show", "--json"))
        assert [k["key_id"] for k in shown["keys"]] == ["k-new"]

        audit = httpx.get(f"{registry}/api/audit", params={"stream": stream}, timeout=5).json()["events"]
        actions = [e["event_type"] for e in audit if e["event_type"] in (KEY_ROTATED, KEY_REMOVED)]
        assert actions == [KEY_REMOVED, KEY_ROTATED]  # newest first
