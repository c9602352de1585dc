"""``/healthz`` (liveness) and ``/healthz?ready=1`` (readiness), and that every kind of service gets ready.

Kubernetes' readiness probes and compose's healthchecks ask readiness: 200 only once a service works, so a
rollout stops at a new pod that never gets there. Liveness stays 200 while a service starts (waiting for
Kafka or the registry), so the kubelet does not restart it for being slow.

Which services report "ok": every one built on ``eddy.runtime.service`` through its :class:`StreamLoop` (set as
it subscribes); ingestion's gateway as its app starts, before it listens; eddy's own schema registry
listens only once its journal is replayed and then always answers "ok".
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import MagicMock

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eddy.core.settings import REPO_ROOT
from eddy.runtime.auth import ApiKeys
from eddy.runtime.loop import BatchResult, StreamLoop
from eddy.runtime.observability import FAILING_STATUS, READY_STATUSES, Health, asks_readiness, health_code
from eddy.runtime.server import HttpApi, serve_http
from eddy.services.ingestion.app import Gateway

from tests.schema_registry.conftest import start_registry

API_KEY = "k-5e1f0a"
# A status set on a Health: ``health.set("ok", ...)`` (the status is the first, positional argument).
SET_STATUS = re.compile(r"health\.set\(\s*[\"'](\w+)[\"']")


@pytest.fixture
def health() -> Health:
    return Health("ready-test")


@pytest.fixture
def health_url(health: Health) -> Iterator[str]:
    """The base URL of a ``serve_http`` for ``health``, with API keys on and one route that needs them."""

    async def empty(_request: web.Request) -> web.Response:
        return web.json_response({})

    api = HttpApi("t", [web.get("/api", empty)], {"/api": {"get": {"responses": {"200": {"description": "{}"}}}}})
    server = serve_http("127.0.0.1", 0, health, api, ApiKeys.parse(f"ops:{API_KEY}:operator"))
    yield server.url
    server.stop()


# --- the answer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "live", "ready"),
    [("starting", 200, 503), ("ok", 200, 200), (FAILING_STATUS, 503, 503), ("stopping", 200, 503)],
)
def test_health_code_answers_liveness_and_readiness(status: str, live: int, ready: int) -> None:
    assert health_code(status, readiness=False) == live
    assert health_code(status, readiness=True) == ready


def test_every_status_a_service_sets_is_ready_or_failing() -> None:
    """A new status (say "degraded") must be classified here: serving (ready) or not, before it ships."""
    sources = [*(REPO_ROOT / "shared").rglob("*.py")]
    statuses = {m.group(1) for path in sources for m in SET_STATUS.finditer(path.read_text())}
    assert "ok" in statuses and statuses <= READY_STATUSES | {FAILING_STATUS}, sorted(statuses)


@pytest.mark.parametrize(
    ("query", "asked"),
    [
        ("", False),
        ("ready=1", True),
        ("ready", True),
        ("ready=true", True),
        ("x=2&ready=1", True),
        ("ready=0", False),
        ("ready=false", False),
        ("readiness=1", False),
    ],
)
def test_which_queries_ask_readiness(query: str, asked: bool) -> None:
    assert asks_readiness(query) is asked


def test_healthz_is_live_while_starting_but_not_ready(health: Health, health_url: str) -> None:
    live = httpx.get(f"{health_url}/healthz", timeout=5)
    ready = httpx.get(f"{health_url}/healthz?ready=1", timeout=5)
    assert live.status_code == 200 and ready.status_code == 503
    # Not ready still says why, with the same document.
    assert ready.headers["content-type"] == "application/json"
    assert ready.json()["status"] == "starting" and ready.json()["service"] == "ready-test"
    assert ready.json().keys() == live.json().keys()


def test_healthz_is_ready_once_ok_and_neither_when_failing(health: Health, health_url: str) -> None:
    health.set("ok", topics=["demo.events"])
    ready = httpx.get(f"{health_url}/healthz?ready=1", timeout=5)
    assert ready.status_code == 200 and ready.json()["topics"] == ["demo.events"]
    assert httpx.get(f"{health_url}/healthz?ready=0", timeout=5).status_code == 200
    health.set(FAILING_STATUS)
    for path in ("/healthz", "/healthz?ready=1"):
        answer = httpx.get(f"{health_url}{path}", timeout=5)
        assert answer.status_code == 503 and json.loads(answer.content)["status"] == FAILING_STATUS, path


def test_readiness_needs_no_api_key(health: Health, health_url: str) -> None:
    health.set("ok")
    assert httpx.get(f"{health_url}/api", timeout=5).status_code == 401  # keys are on
    assert httpx.get(f"{health_url}/healthz?ready=1", timeout=5).status_code == 200


# --- every kind of service gets ready --------------------------------------------------------------------


def test_a_stream_loop_service_is_ready_once_it_subscribes(health: Health) -> None:
    """validation, inference, learning, monitoring, retraining and model_registry: ``StreamLoop.run``."""
    status_at_subscribe: list[str] = []
    consumer = MagicMock()
    consumer.subscribe.side_effect = lambda *_args, **_kwargs: status_at_subscribe.append(health.status)
    loop = StreamLoop(
        service="ready-test",
        consumer=consumer,
        producer=MagicMock(),
        serdes=MagicMock(),
        topics=["demo.validated"],
        handler=lambda _records: BatchResult(),
        health=health,
    )
    stop = threading.Event()
    stop.set()  # subscribe, then close at once: no batch is needed to be ready
    loop.run(stop)
    assert status_at_subscribe == ["starting"]
    assert health_code(health.status, readiness=True) == 200


def test_the_ingestion_gateway_is_ready_before_it_listens(health: Health) -> None:
    gateway = Gateway({}, MagicMock(), MagicMock(), health)

    async def ready_answer() -> tuple[int, str]:
        # The app's start-up hooks run before its server accepts a connection.
        async with TestClient(TestServer(gateway.app())) as client:
            answer = await client.get("/healthz?ready=1")
            return answer.status, (await answer.json())["status"]

    assert health.status == "starting"
    assert asyncio.run(ready_answer()) == (200, "ok")


def test_eddys_schema_registry_answers_readiness_once_it_listens(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "data")
    try:
        answer = httpx.get(f"{registry.url}/healthz?ready=1", timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
    finally:
        registry.stop()
