"""``eddy.Client`` against mock HTTP services: URLs from stack.json or arguments, keys, bodies, errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from eddy import Client, ClientError

INGESTION = "http://127.0.0.1:7001"
INFERENCE = "http://127.0.0.1:7002"
PREDICT = "http://127.0.0.1:7012"
REGISTRY = "http://127.0.0.1:7003"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A mock transport that answers with ``handler`` and keeps every request."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler
        self.transport = httpx.MockTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def services(request: httpx.Request) -> httpx.Response:
    """The three APIs and inference's health, as a running stack answers them."""
    url = str(request.url)
    if url == f"{INFERENCE}/healthz":
        return httpx.Response(200, json={"status": "ok", "predict_url": PREDICT})
    if url.startswith(f"{PREDICT}/v1/streams/demo/predict"):
        records = json.loads(request.content)
        results = [{"index": i, "status": "predicted", "event_id": r["event_id"]} for i, r in enumerate(records)]
        return httpx.Response(200, json={"predicted": len(records), "rejected": 0, "results": results})
    if url.startswith(f"{INGESTION}/v1/streams/demo/"):
        records = json.loads(request.content)
        return httpx.Response(200, json={"accepted": len(records), "rejected": 0, "duplicates": 0, "results": []})
    if url.startswith(f"{REGISTRY}/api/"):
        body = json.loads(request.content) if request.content else dict(request.url.params)
        return httpx.Response(200, json={"path": request.url.path, "body": body, "event": {}})
    return httpx.Response(404, json={"error": f"no {url}"})


def running_stack(state: Path) -> Path:
    """A stack.json as `eddy up` writes it, its supervisor this (live) process."""
    state.mkdir(parents=True, exist_ok=True)
    doc = {
        "supervisor_pid": os.getpid(),
        "ready": True,
        "services": {
            "ingestion": {"url": INGESTION},
            "inference": {"url": INFERENCE},
            "model_registry": {"url": REGISTRY},
        },
    }
    (state / "stack.json").write_text(json.dumps(doc))
    return state


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDDY_API_KEY", "EDDY_MODEL_REGISTRY_URL", "EDDY_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_urls_come_from_the_running_stack_and_the_predict_url_from_inference(tmp_path: Path) -> None:
    mock = Recorder(services)
    with Client(state_dir=running_stack(tmp_path / "state"), transport=mock.transport) as client:
        answer = client.send_events("demo", [{"event_id": "a", "x0": 1.0}, {"event_id": "b", "x0": 2.0}])
        assert answer["accepted"] == 2
        assert client.send_labels("demo", {"event_id": "a", "label": True})["accepted"] == 1
        assert [r["event_id"] for r in client.predict("demo", [{"event_id": "a"}])] == ["a"]
        assert [r["event_id"] for r in client.predict("demo", [{"event_id": "b"}])] == ["b"]
        assert client.models("demo")["body"] == {"stream": "demo"}
    urls = [str(r.url) for r in mock.requests]
    assert urls == [
        f"{INGESTION}/v1/streams/demo/events",
        f"{INGESTION}/v1/streams/demo/feedback",
        f"{INFERENCE}/healthz",  # once: the prediction API's URL is kept
        f"{PREDICT}/v1/streams/demo/predict",
        f"{PREDICT}/v1/streams/demo/predict",
        f"{REGISTRY}/api/models?stream=demo",
    ]
    assert not any("X-API-Key" in r.headers for r in mock.requests)


def test_explicit_urls_need_no_stack_and_the_api_key_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mock = Recorder(services)
    client = Client(
        ingestion_url=INGESTION + "/",
        predict_url=PREDICT,
        registry_url=REGISTRY,
        state_dir=tmp_path / "none",
        api_key="k-123",
        transport=mock.transport,
    )
    client.send_events("demo", {"event_id": "a"})
    client.predict("demo", {"event_id": "a"})
    client.models("demo")
    assert [r.headers["X-API-Key"] for r in mock.requests] == ["k-123"] * 3
    assert str(mock.requests[0].url) == f"{INGESTION}/v1/streams/demo/events"
    # EDDY_API_KEY and EDDY_MODEL_REGISTRY_URL, as the CLI reads them.
    monkeypatch.setenv("EDDY_API_KEY", "from-env")
    monkeypatch.setenv("EDDY_MODEL_REGISTRY_URL", REGISTRY)
    Client(state_dir=tmp_path / "none", transport=mock.transport).models("demo")
    assert mock.requests[-1].headers["X-API-Key"] == "from-env"


def test_records_are_sent_as_plain_json(tmp_path: Path) -> None:
    mock = Recorder(services)
    client = Client(ingestion_url=INGESTION, transport=mock.transport)
    client.send_events("demo", [{"event_id": "a", "x0": np.float64(1.5), "n": np.int64(3), "region": float("nan")}])
    assert json.loads(mock.requests[0].content) == [{"event_id": "a", "x0": 1.5, "n": 3, "region": None}]
    assert mock.requests[0].headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match="a value JSON cannot carry"):
        client.send_events("demo", {"event_id": "a", "x0": float("inf")})
    with pytest.raises(TypeError, match="a mapping or an iterable of mappings, not str"):
        client.send_events("demo", "event_id=a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="each one a mapping, not int"):
        client.send_events("demo", [1])  # type: ignore[list-item]


def test_model_changes_send_stream_actor_and_reason(tmp_path: Path) -> None:
    mock = Recorder(services)
    client = Client(registry_url=REGISTRY, transport=mock.transport)
    client.promote("demo", "default@2", reason="better")
    client.rollback("demo")
    client.rollback("demo", to="default@1")
    client.retrain("demo", reason="drift")
    sent = [(r.url.path, json.loads(r.content)) for r in mock.requests]
    paths = ["/api/models/promote", "/api/models/rollback", "/api/models/rollback", "/api/retrain"]
    assert [path for path, _ in sent] == paths
    assert sent[0][1]["version"] == "default@2" and sent[0][1]["reason"] == "better"
    assert "to" not in sent[1][1] and "reason" not in sent[1][1] and sent[2][1]["to"] == "default@1"
    assert all(body["stream"] == "demo" and body["actor"].startswith("python") for _, body in sent)


def answering(status: int, doc: Any) -> Handler:
    return lambda request: httpx.Response(status, json=doc)


@pytest.mark.parametrize(
    ("status", "doc", "message"),
    [
        (
            401,
            {"error": "no API key"},
            "the model registry refused: no API key (HTTP 401: pass api_key= or set EDDY_API_KEY)",
        ),
        (403, {"error": "viewer may not"}, "(HTTP 403: the API key needs another role)"),
        (404, {"error": "unknown stream 'x'"}, "unknown stream 'x' (HTTP 404)"),
        (422, {"error": "bad version"}, "bad version (HTTP 422)"),
        (503, {"error": "Kafka is down"}, "Kafka is down (HTTP 503)"),
        (200, ["not", "an", "object"], "JSON that is no object"),
    ],
)
def test_error_answers_raise_with_the_services_message(status: int, doc: Any, message: str) -> None:
    client = Client(registry_url=REGISTRY, transport=httpx.MockTransport(answering(status, doc)))
    with pytest.raises(ClientError) as caught:
        client.models("demo")
    assert message in str(caught.value)
    if status >= 400:
        assert caught.value.status == status and caught.value.body == doc


def test_records_rejected_one_by_one_are_an_answer_not_an_error() -> None:
    rejected = {"predicted": 0, "rejected": 1, "results": [{"index": 0, "status": "rejected", "reasons": []}]}
    client = Client(predict_url=PREDICT, transport=httpx.MockTransport(answering(422, rejected)))
    assert client.predict("demo", {"event_id": "a"})[0]["status"] == "rejected"


def test_a_stack_that_is_not_running_or_not_reachable(tmp_path: Path) -> None:
    with pytest.raises(
        ClientError, match=r"no running eddy stack in .*start one with `eddy up`, or pass ingestion_url="
    ):
        Client(state_dir=tmp_path).send_events("demo", {"event_id": "a"})
    state = running_stack(tmp_path / "dead")
    doc = json.loads((state / "stack.json").read_text())
    (state / "stack.json").write_text(json.dumps({**doc, "supervisor_pid": 2**22 + 12345}))
    with pytest.raises(ClientError, match="no running eddy stack"):
        Client(state_dir=state).models("demo")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ClientError, match=rf"cannot reach the ingestion gateway at {INGESTION}/v1/streams/demo/events"):
        Client(ingestion_url=INGESTION, transport=httpx.MockTransport(refuse)).send_events("demo", {})
    starting = Client(
        state_dir=running_stack(tmp_path / "starting"),
        transport=httpx.MockTransport(answering(200, {"status": "starting"})),
    )
    with pytest.raises(ClientError, match="reports no prediction API yet"):
        starting.predict("demo", {"event_id": "a"})
    with pytest.raises(ValueError, match="unknown service 'nope'"):
        starting.url("nope")


def test_a_text_answer_is_a_clear_error() -> None:
    client = Client(ingestion_url=INGESTION, transport=httpx.MockTransport(lambda r: httpx.Response(502, text="<h1>")))
    with pytest.raises(ClientError, match="the ingestion gateway answered 502 without JSON"):
        client.send_events("demo", {"event_id": "a"})
