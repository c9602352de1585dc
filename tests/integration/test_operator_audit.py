"""API keys with roles on the registry and the dashboard, against the real broker: who may act, and who did.

Two keys on the model registry (viewer ``vera``, operator ``otto``) plus a producer key from a keys file
(a mounted Secret): the viewer cannot promote, the operator can, and the audit log (``/api/audit``) and
the published event name ``otto``. A DLQ replay through ``eddy dlq replay`` is refused to the viewer
before anything is sent, and recorded under ``otto``. The dashboard refuses a producer key.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, StreamTopics
from eddy.ml.roles import PROMOTED, event_details

from tests.conftest import service_env
from tests.helpers import ValueWriter, create_topics, service, wait_until
from tests.integration.test_dlq_tools import dead_letter, letter
from tests.integration.test_model_registry import candidate, wait_for_event

pytestmark = pytest.mark.integration

VIEWER_KEY, OPERATOR_KEY, PRODUCER_KEY = "vk-5b1e0c9a7d", "ok-e3a4f8812b", "pk-90c2d7e61f"
API_KEYS = f"vera:{VIEWER_KEY}:viewer,otto:{OPERATOR_KEY}:operator"
CHALLENGES = ['Bearer realm="eddy"', 'Basic realm="eddy", charset="UTF-8"']


def keyed(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def keys_env(tmp_path: Path) -> dict[str, str]:
    """Two keys in ``EDDY_API_KEYS`` and the producer's in a keys file, as a Kubernetes Secret mounts it."""
    path = tmp_path / "api-keys"
    path.write_text(f"# eddy-api-keys Secret\n\npia:{PRODUCER_KEY}:producer\n")
    return {"EDDY_API_KEYS": API_KEYS, "EDDY_API_KEYS_FILE": str(path)}


def eddy(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eddy.cli.main", *args],
        env=service_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def audit(url: str, stream: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/audit", params={"stream": stream}, headers=keyed(VIEWER_KEY), timeout=5)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def test_a_viewer_cannot_promote_an_operator_can_and_the_audit_log_says_who(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("model_registry", settings, tmp_path, **keys_env(tmp_path)) as (_, url, log):
        models = f"{url}/api/models"

        def versions() -> list[str]:
            response = httpx.get(models, params={"stream": stream}, headers=keyed(VIEWER_KEY), timeout=5)
            return [v["version"] for v in response.json()["versions"]] if response.status_code == 200 else []

        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # probes need no key
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200  # nor does Prometheus
        ValueWriter(settings, MODEL_CANDIDATES_TOPIC, key_field="stream").send([candidate(settings, 1)])
        wait_until(lambda: versions() == ["default@1", "default@2"], 40, 0.3, "version 2 registered")

        promote = f"{url}/api/models/promote"
        body = {"stream": stream, "version": "default@2", "reason": "better holdout", "actor": "mallory"}
        anonymous = httpx.post(promote, json=body, timeout=10)
        assert anonymous.status_code == 401 and "API key is required" in anonymous.json()["error"]
        assert anonymous.headers.get_list("WWW-Authenticate") == CHALLENGES
        viewer = httpx.post(promote, json=body, headers=keyed(VIEWER_KEY), timeout=10)
        assert viewer.status_code == 403, viewer.text
        assert viewer.json() == {
            "error": "the viewer role may not POST /api/models/promote; that needs the operator role",
            "status": 403,
        }
        assert httpx.get(models, params={"stream": stream}, headers=keyed(VIEWER_KEY)).json()["champion"] == "default@1"
        operator = httpx.post(promote, json=body, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=10)
        assert operator.status_code == 200, operator.text

        (promotion,) = [e for e in audit(url, stream) if e["event_type"] == PROMOTED]
        assert promotion["actor"] == "user:otto" and promotion["details"]["by"] == "user:otto"
        assert promotion["details"]["reason"] == "better holdout"
        published = wait_for_event(settings, "the promotion", lambda e: e["event_type"] == PROMOTED)
        assert event_details(published)["by"] == "user:otto"  # whoever reads eddy.model-events sees who, too
        assert httpx.get(f"{url}/api/audit", params={"stream": stream}, timeout=5).status_code == 401
        as_producer = httpx.get(f"{url}/api/audit", params={"stream": stream}, headers=keyed(PRODUCER_KEY))
        assert as_producer.status_code == 403 and "producer role" in as_producer.json()["error"]

        # A DLQ replay runs from the CLI against Kafka; the registry's audit log records it first.
        topics = StreamTopics(stream)
        dead_letter(settings, [letter(topics.events, 5, b"e5", b'{"x0": 1}', "contract:max")])
        cli_env = {"EDDY_MODEL_REGISTRY_URL": url}
        refused = eddy(settings, "dlq", "replay", stream, EDDY_API_KEY=VIEWER_KEY, **cli_env)
        assert refused.returncode == 1, refused.stderr
        (line,) = refused.stderr.splitlines()
        assert line.startswith("eddy: error: nothing replayed: the audit log must record a replay first: ")
        assert "the viewer role may not POST /api/audit" in line and "(HTTP 403" in line
        done = eddy(settings, "dlq", "replay", stream, "--json", EDDY_API_KEY=OPERATOR_KEY, **cli_env)
        assert done.returncode == 0, done.stderr
        entries = audit(url, stream)
        replays = [e for e in entries if e["event_type"].startswith("dlq_replay")]
        assert [(e["event_type"], e["actor"]) for e in replays] == [
            ("dlq_replayed", "user:otto"),
            ("dlq_replay_started", "user:otto"),
        ]
        outcome = replays[0]["details"]
        assert (outcome["replayed"], outcome["replayed_by_topic"]) == (1, {topics.events: 1}), outcome
        assert list(outcome["ranges"].values()) == [{"first_offset": 0, "last_offset": 0}]
        assert all(e["actor"] != "user:vera" for e in entries)  # the viewer's replay was refused before it began
        # Keys are never logged, by the registry or the CLI.
        for text in (log.read_text(), refused.stderr, done.stderr, done.stdout):
            assert all(key not in text for key in (VIEWER_KEY, OPERATOR_KEY, PRODUCER_KEY))


def test_the_dashboard_needs_a_viewer_key(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("monitoring", settings, tmp_path, **keys_env(tmp_path)) as (_, url, _log):
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        page = f"{url}/dashboard"
        anonymous = httpx.get(page, timeout=5)
        assert anonymous.status_code == 401 and anonymous.headers.get_list("WWW-Authenticate") == CHALLENGES
        producer = httpx.get(page, headers=keyed(PRODUCER_KEY), timeout=5)
        assert producer.status_code == 403 and producer.json()["error"] == (
            "the producer role may not GET /dashboard; that needs the viewer role"
        )
        viewer = httpx.get(page, headers=keyed(VIEWER_KEY), timeout=5)
        assert viewer.status_code == 200 and viewer.headers["Content-Type"].startswith("text/html")
        # What a browser sends once it asked for the key: Basic, any user name, the key as the password.
        basic = "Basic " + base64.b64encode(f"vera:{VIEWER_KEY}".encode()).decode()
        assert httpx.get(f"{url}/dashboard/app.js", headers={"Authorization": basic}, timeout=5).status_code == 200

        def document(key: str) -> int:
            return httpx.get(
                f"{url}/api/dashboard", params={"stream": stream}, headers=keyed(key), timeout=5
            ).status_code

        wait_until(lambda: document(VIEWER_KEY) == 200, 30, 0.3, "the dashboard document")
        assert document(OPERATOR_KEY) == 200 and document(PRODUCER_KEY) == 403
