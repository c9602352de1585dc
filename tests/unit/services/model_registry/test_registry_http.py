"""The model registry's REST API against a registry in a temp dir, served by serve_http; no Kafka."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.ml.roles import PROMOTED, RETRAIN_REQUESTED, ROLLED_BACK
from eddy.runtime.observability import Health
from eddy.runtime.server import serve_http
from eddy.services.model_registry.http import RegistryApi

from tests.unit.services.model_registry.test_registry_store import candidate, open_registry


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[httpx.Client, RegistryApi]]:
    """One server for the module (stopping one takes half a second); each test attaches its own registry."""
    rest = RegistryApi()
    server = serve_http("127.0.0.1", 0, Health("model_registry"), rest.http_api())
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5)
    assert client.get("/api/models", params={"stream": "demo"}).status_code == 503  # not attached yet
    yield client, rest
    client.close()
    server.stop()


@pytest.fixture()
def api(served: tuple[httpx.Client, RegistryApi], tmp_path: Path) -> tuple[httpx.Client, RegistryApi, list[int]]:
    client, rest = served
    registry = open_registry(tmp_path)
    contract = registry.contract("demo")
    registry.register_candidate(candidate(contract, 1))
    registry.register_candidate(candidate(contract, 2, parent_version=2, metrics=json.dumps({"accuracy": 0.95})))
    published: list[int] = []

    def publish() -> bool:
        published.append(len(registry.store.unpublished()))
        return True

    rest.attach(registry, publish)
    return client, rest, published


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_list_versions_with_alias_metrics_and_creator(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, _, _ = api
    doc = ok(client.get("/api/models", params={"stream": "demo"}))
    assert doc["champion"] == "default@1" and doc["challenger"] == "default@3"
    by_version = {v["version"]: v for v in doc["versions"]}
    assert [by_version[k]["alias"] for k in ("default@1", "default@2", "default@3")] == [
        "champion",
        "shadow",
        "challenger",
    ]
    assert by_version["default@2"]["metrics"] == {"holdout.accuracy": 0.9, "holdout.champion_accuracy": 0.8}
    assert by_version["default@2"]["created_by"] == "retraining" and by_version["default@1"]["created_by"] == (
        "model_registry"
    )


def test_show_has_lineage_online_ranges_and_audit(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, _, _ = api
    doc = ok(client.get("/api/models/show", params={"stream": "demo", "version": "default@3"}))
    assert doc["key"] == "default@3" and doc["alias"] == "challenger" and doc["parent"] == "default@2"
    assert [a["version"] for a in doc["lineage"]] == ["default@2", "default@1"]
    assert doc["lineage"][0]["training_offsets"][0]["topic"] == "demo.labeled"
    assert doc["online_ranges"] == {} and [e["event_type"] for e in doc["audit"]] == ["registered"]
    shadow = ok(client.get("/api/models/show", params={"stream": "demo", "version": "default@2"}))
    assert len(shadow["audit"]) == 2  # registered, then demoted by default@3


def test_diff_compares_spec_metrics_and_lineage(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, _, _ = api
    doc = ok(client.get("/api/models/diff", params={"stream": "demo", "a": "default@1", "b": "default@3"}))
    assert doc["spec"] == {"same": True, "changes": []}
    assert doc["metrics"]["accuracy"] == {"a": None, "b": 0.95}
    assert doc["lineage"]["b"]["chain"] == ["default@3", "default@2", "default@1"]
    assert doc["lineage"]["common_ancestor"] == "default@1"


def test_promote_rollback_archive_retrain(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, _, published = api
    doc = ok(client.post("/api/models/promote", json={"stream": "demo", "version": "default@3", "reason": "r"}))
    assert doc["event"]["event_type"] == PROMOTED and doc["event"]["actor"] == "model_registry"
    assert doc["event"]["details"]["by"] == "user:cli" and doc["event"]["details"]["previous"] == "default@1"
    assert doc["roles"]["default@3"] == "champion" and doc["published"] is True and published
    doc = ok(client.post("/api/models/rollback", json={"stream": "demo", "actor": "ann"}))
    assert doc["event"]["event_type"] == ROLLED_BACK and doc["roles"]["default@3"] == "archived"
    assert doc["event"]["details"]["from"] == "default@3" and doc["roles"]["default@1"] == "champion"
    doc = ok(client.post("/api/models/archive", json={"stream": "demo", "version": "default@2"}))
    assert doc["roles"]["default@2"] == "archived"
    doc = ok(client.post("/api/retrain", json={"stream": "demo", "actor": "bob", "reason": "why not"}))
    event = doc["event"]
    assert event["event_type"] == RETRAIN_REQUESTED and event["actor"] == "user:bob"
    assert (event["model_name"], event["model_version"]) == ("default", 1)
    audit = ok(client.get("/api/audit", params={"stream": "demo", "limit": "3"}))["events"]
    assert [a["event_type"] for a in audit] == ["retrain_requested", "archived", "rolled_back"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        ("POST", "/api/models/archive", {"stream": "demo", "version": "default@1"}, 409, "champion"),
        ("POST", "/api/models/promote", {"stream": "demo", "version": "default@1"}, 409, "already"),
        ("POST", "/api/models/promote", {"stream": "demo", "version": "default@9"}, 404, "no model version"),
        ("POST", "/api/models/promote", {"stream": "nope", "version": "default@1"}, 404, "unknown stream"),
        ("POST", "/api/models/promote", {"stream": "demo", "version": "default"}, 400, "default@3"),
        ("POST", "/api/models/promote", {"version": "default@1"}, 400, "stream"),
        ("POST", "/api/models/rollback", {"stream": "demo"}, 409, "no previous champion"),
        ("POST", "/api/nothing", {}, 404, "not found"),
        ("GET", "/api/models/show", {"stream": "demo"}, 400, "version is required"),
        ("GET", "/api/audit", {"stream": "demo", "limit": "x"}, 400, "limit"),
    ],
)
def test_errors_are_json_with_a_message(
    api: tuple[httpx.Client, RegistryApi, list[int]],
    method: str,
    path: str,
    payload: dict[str, str],
    status: int,
    message: str,
) -> None:
    client, _, _ = api
    response = client.post(path, json=payload) if method == "POST" else client.get(path, params=payload)
    assert response.status_code == status and message in response.json()["error"]


def test_bad_bodies_are_refused(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, _, _ = api
    assert client.post("/api/models/promote", content=b"{nope").status_code == 400
    assert client.post("/api/models/promote", content=b"[1]").status_code == 400
    assert client.post("/api/models/promote", content=b"x" * 1_000_001).status_code == 413
    assert client.get("/healthz").status_code == 200  # the server still answers


def test_unpublished_changes_answer_202(api: tuple[httpx.Client, RegistryApi, list[int]]) -> None:
    client, rest, _ = api
    rest.publish = lambda: False
    doc = ok(client.post("/api/models/promote", json={"stream": "demo", "version": "default@2"}), 202)
    assert doc["published"] is False and doc["roles"]["default@2"] == "champion"
