"""The prediction API without Kafka: a fake producer and serde behind the real aiohttp application."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eddy.core.settings import REPO_ROOT
from eddy.kafka.producer import Delivery, DeliveryError
from eddy.runtime.auth import ApiKeys
from eddy.services.inference.config import InferenceConfig, inference_config
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.inference.http import PredictApi, ServerThread

from tests.records import demo_contract


class FakeProducer:
    """Records what would be sent; ``fail`` makes the broker refuse it."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []
        self.fail = fail

    def track(self) -> Delivery:
        return Delivery()

    def produce(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, timestamp_ms: int | None = None
    ) -> None:
        self.sent.append((topic, value, key, timestamp_ms))

    def wait(self, delivery: Delivery, timeout_s: float = 30.0) -> None:
        if self.fail:
            raise DeliveryError("1 records not delivered, first: broker down")

    def confirm(self, timeout_s: float = 30.0) -> None:
        pass


class JsonSerdes:
    def for_topic(self, topic: str) -> JsonSerdes:
        return self

    def encode(self, value: dict[str, Any]) -> bytes:
        return json.dumps(value).encode()


def post(api: PredictApi, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async def run() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(api.app())) as client:
            response = await client.post("/v1/streams/demo/predict", json=body, headers=headers)
            return response.status, await response.json()

    return asyncio.run(run())


def api_with(producer: FakeProducer, **kw: Any) -> PredictApi:
    contract = demo_contract()
    predict = PredictBatch({"demo": contract}, fresh_models({"demo": contract}))
    return PredictApi({"demo": contract}, JsonSerdes(), predict, producer, **kw)  # type: ignore[arg-type]


def test_settings_read_from_env_and_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDDY_INFERENCE_HTTP_MAX_BATCH", "7")
    assert inference_config().http_max_batch == 7
    text = (REPO_ROOT / "docs/configuration.md").read_text()
    for name in InferenceConfig.__dataclass_fields__:
        assert f"`EDDY_INFERENCE_{name.upper()}`" in text


def test_predictions_are_logged_with_no_source_and_answered_in_order() -> None:
    producer = FakeProducer()
    records = [
        {"event_id": "a", "event_time_ms": 5, "x0": 1, "x1": 2, "x2": 3},
        {"x0": 99},
        {"x0": 1, "x1": 2, "x2": 3},
    ]
    status, body = post(api_with(producer), records)
    assert status == 207 and (body["predicted"], body["rejected"]) == (2, 1)
    assert [r["status"] for r in body["results"]] == ["predicted", "rejected", "predicted"]
    reason = body["results"][1]["reasons"][0]
    assert (reason["field"], reason["rule"], reason["value"]) == ("x0", "max", 99.0) and "maximum" in reason["message"]
    logged = [json.loads(value) for _, value, _, _ in producer.sent]
    assert [p["event_id"] for p in logged] == ["a", body["results"][2]["event_id"]]
    assert all(p["source_partition"] == -1 and p["source_offset"] == -1 for p in logged)
    assert producer.sent[0][0] == "demo.predictions" and producer.sent[0][2:] == (b"a", 5)


def test_nothing_valid_is_422_and_sends_nothing() -> None:
    producer = FakeProducer()
    status, body = post(api_with(producer), {"colour": "red"})
    assert status == 422 and body["results"][0]["reasons"][0]["rule"] == "schema"
    assert producer.sent == []


def test_unacknowledged_predictions_are_503() -> None:
    status, body = post(api_with(FakeProducer(fail=True)), {"x0": 1, "x1": 2, "x2": 3})
    assert status == 503 and "broker down" in body["error"]


def test_viewer_may_not_predict() -> None:
    api = api_with(FakeProducer(), keys=ApiKeys.parse("v:viewer"))
    assert post(api, {}, {"X-API-Key": "v"})[0] == 403
    assert post(api, {})[0] == 401


def test_server_thread_serves_until_stopped() -> None:
    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"hello": True})

    app = web.Application()
    app.router.add_get("/", hello)
    server = ServerThread(app, "127.0.0.1", 0)
    url = server.start()
    try:
        assert httpx.get(url, timeout=5).json() == {"hello": True}
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="did not start"):
            ServerThread(web.Application(), "127.0.0.1", port).start()
    finally:
        server.stop(10)
    assert not server._thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)
