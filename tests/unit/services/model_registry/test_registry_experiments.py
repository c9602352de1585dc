"""Experiments in the model registry: the store's table and the REST routes, without Kafka."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.runtime.observability import Health
from eddy.runtime.server import serve_http
from eddy.services.model_registry.handlers import Registry
from eddy.services.model_registry.http import RegistryApi
from eddy.services.model_registry.store import ExperimentConflict, Store

from tests.unit.services.model_registry.test_registry_store import open_registry

DATA = {"stream": "demo", "topic": "demo.labeled", "bounds": {"from": 1, "until": 9}, "rows": 8}


def body(**overrides: Any) -> dict[str, Any]:
    base = {
        "stream": "demo",
        "title": "x2 matters now",
        "created_by": "alice",
        "models": ["default@1", {"name": "tree", "pipeline": [{"tree.HoeffdingTreeClassifier": {}}]}],
        "data": DATA,
        "metrics": {"default@1": {"accuracy": 0.8}, "tree": {"accuracy": 0.85}},
        "report": "/tmp/report.html",
        "output": None,
        "seed": 42,
    }
    return {**base, **overrides}


# -- the store ------------------------------------------------------------------------------------------------


def test_store_records_lists_and_shows_experiments(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.db")
    first, new = store.add_experiment("a", "demo", "alice", "one", {"metrics": {"m": 1}}, created_at_ms=1000)
    assert new and first == {
        "metrics": {"m": 1},
        "id": "a",
        "stream": "demo",
        "created_at_ms": 1000,
        "created_by": "alice",
        "title": "one",
    }
    store.add_experiment("b", "demo", "bob", "two", {}, created_at_ms=3000)
    store.add_experiment("c", "other", "bob", "three", {}, created_at_ms=2000)
    assert [e["id"] for e in store.experiments("demo")] == ["b", "a"]
    assert [e["id"] for e in store.experiments("demo", limit=1)] == ["b"]
    assert store.experiment("c") is not None and store.experiment("nope") is None


def test_recording_again_is_a_no_op_and_a_different_document_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "registry.db")
    first, _ = store.add_experiment("a", "demo", "alice", "one", {"metrics": {"m": 1}}, created_at_ms=1000)
    again, new = store.add_experiment("a", "demo", "alice", "one", {"metrics": {"m": 1}})
    assert not new and again == first
    with pytest.raises(ExperimentConflict):
        store.add_experiment("a", "demo", "alice", "one", {"metrics": {"m": 2}})
    assert len(store.experiments("demo")) == 1


def test_an_existing_database_gains_the_table_and_keeps_its_rows(tmp_path: Path) -> None:
    registry = open_registry(tmp_path)
    db_path = registry.store.path
    versions = len(registry.store.versions("demo"))
    registry.store.close()
    # A database from before experiments existed.
    with sqlite3.connect(db_path) as db:
        db.execute("DROP TABLE experiments")
    reopened = Store(db_path)
    assert len(reopened.versions("demo")) == versions and reopened.experiments("demo") == []
    reopened.add_experiment("a", "demo", "alice", "", {})
    reopened.close()
    assert Store(db_path).experiment("a") is not None  # and opening it again changes nothing


# -- the routes -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[httpx.Client, RegistryApi]]:
    rest = RegistryApi()
    server = serve_http("127.0.0.1", 0, Health("model_registry"), rest.http_api())
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5)
    yield client, rest
    client.close()
    server.stop()


@pytest.fixture()
def api(served: tuple[httpx.Client, RegistryApi], tmp_path: Path) -> tuple[httpx.Client, Registry]:
    client, rest = served
    registry = open_registry(tmp_path)
    rest.attach(registry, lambda: True)
    return client, registry


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_post_then_list_and_show(api: tuple[httpx.Client, Registry]) -> None:
    client, registry = api
    answer = ok(client.post("/api/experiments", json=body()), 201)
    experiment_id = answer["id"]
    assert answer["created"] and len(experiment_id) == 36  # a UUID when none is given
    shown = ok(client.get("/api/experiments/show", params={"id": experiment_id}))
    assert shown == answer["experiment"]
    assert shown["title"] == "x2 matters now" and shown["created_by"] == "alice" and shown["data"] == DATA
    assert shown["seed"] == 42 and shown["report"] == "/tmp/report.html" and shown["output"] is None
    assert shown["created_at_ms"] > 0
    ok(
        client.post(
            "/api/experiments", json=body(id="run-2", title="second", created_at_ms=shown["created_at_ms"] + 1)
        ),
        201,
    )
    listed = ok(client.get("/api/experiments", params={"stream": "demo"}))
    assert [e["id"] for e in listed["experiments"]] == ["run-2", experiment_id]
    assert [
        e["id"] for e in ok(client.get("/api/experiments", params={"stream": "demo", "limit": 1}))["experiments"]
    ] == ["run-2"]
    assert registry.store.experiment("run-2") is not None


def test_a_retried_post_is_answered_200_and_a_different_one_409(api: tuple[httpx.Client, Registry]) -> None:
    client, _ = api
    ok(client.post("/api/experiments", json=body(id="run-1")), 201)
    again = ok(client.post("/api/experiments", json=body(id="run-1")))
    assert again["created"] is False and again["id"] == "run-1"
    refused = ok(client.post("/api/experiments", json=body(id="run-1", metrics={})), 409)
    assert "already recorded" in refused["error"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"stream": None}, "name the stream"),
        ({"models": []}, "models must be a non-empty list"),
        ({"models": "default@1"}, "models must be a non-empty list"),
        ({"models": [3]}, "models[0]"),
        ({"data": None}, "data must be a JSON object"),
        ({"metrics": [1]}, "metrics must be a JSON object"),
        ({"report": 7}, "report must be a path"),
        ({"id": "../etc"}, "id must be"),
        ({"title": ["x"]}, "title must be a string"),
        ({"created_at_ms": "now"}, "created_at_ms"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(api: tuple[httpx.Client, Registry], change: dict, reason: str) -> None:
    client, registry = api
    refused = ok(client.post("/api/experiments", json=body(**change)), 400)
    assert reason in refused["error"]
    assert registry.store.experiments("demo") == []


def test_not_json_unknown_stream_and_unknown_id(api: tuple[httpx.Client, Registry]) -> None:
    client, _ = api
    assert "not JSON" in ok(client.post("/api/experiments", content=b"{nope"), 400)["error"]
    assert "JSON object" in ok(client.post("/api/experiments", content=json.dumps([1]).encode()), 400)["error"]
    assert "unknown stream" in ok(client.post("/api/experiments", json=body(stream="nope")), 404)["error"]
    assert "unknown stream" in ok(client.get("/api/experiments", params={"stream": "nope"}), 404)["error"]
    assert "limit" in ok(client.get("/api/experiments", params={"stream": "demo", "limit": "x"}), 400)["error"]
    assert "no experiment" in ok(client.get("/api/experiments/show", params={"id": "nope"}), 404)["error"]
    assert "id is required" in ok(client.get("/api/experiments/show"), 400)["error"]
