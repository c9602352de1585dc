"""Every HTTP API of eddy serves a valid OpenAPI document at ``/openapi.json``, describing every route it serves.

The servers: ingestion's gateway, inference's prediction API, the model registry's REST API, the monitoring
dashboard, and the ``/healthz`` + ``/metrics`` server of every other service. Each is built in-process (no
Kafka), asked for its document over HTTP, and the document is checked with ``openapi-spec-validator``; its
paths are compared with the routes of the aiohttp router, both ways.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eddy.contracts.stream import StreamContract, load_contract
from eddy.core.settings import REPO_ROOT
from eddy.runtime.auth import ApiKeys
from eddy.runtime.observability import Health
from eddy.runtime.openapi import undocumented, unserved
from eddy.runtime.server import service_app
from eddy.services.inference.http import PredictApi
from eddy.services.ingestion.app import Gateway
from eddy.services.model_registry.http import RegistryApi
from eddy.services.monitoring.dashboard import dashboard_api
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT4

from tests.dashboard_documents import estimating_monitor

SAMPLE_DASHBOARD = Path(__file__).resolve().parents[2] / "browser" / "sample_dashboard.json"


def contracts() -> dict[str, StreamContract]:
    return {"demo": load_contract(REPO_ROOT / "schemas/streams/demo.yaml")}


APPS: dict[str, Callable[[], web.Application]] = {
    "ingestion": lambda: Gateway(contracts(), MagicMock(), MagicMock(), Health("ingestion")).app(),
    "inference predictions": lambda: PredictApi(contracts(), MagicMock(), MagicMock(), MagicMock()).app(),
    "model registry": lambda: service_app(Health("model_registry"), RegistryApi().http_api(), ApiKeys()),
    "monitoring dashboard": lambda: service_app(Health("monitoring"), dashboard_api({}), ApiKeys()),
    "any other service": lambda: service_app(Health("validation")),
}


def served_document(app: web.Application) -> tuple[int, dict[str, Any]]:
    async def get() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(app)) as client:
            answer = await client.get("/openapi.json")
            return answer.status, json.loads(await answer.read())

    return asyncio.run(get())


@pytest.fixture(params=sorted(APPS))
def served(request: pytest.FixtureRequest) -> tuple[web.Application, dict[str, Any]]:
    app = APPS[request.param]()
    status, doc = served_document(app)
    assert status == 200
    return app, doc


def test_the_document_is_valid_openapi(served: tuple[web.Application, dict[str, Any]]) -> None:
    _, doc = served
    validate(doc)  # raises, naming the first error
    assert doc["openapi"] == "3.0.3" and doc["info"]["title"].startswith("eddy")


def test_every_route_is_documented_and_every_documented_route_served(
    served: tuple[web.Application, dict[str, Any]],
) -> None:
    app, doc = served
    assert undocumented(app, doc) == []
    assert unserved(app, doc) == []


def test_operation_ids_are_unique(served: tuple[web.Application, dict[str, Any]]) -> None:
    _, doc = served
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids))


def test_open_routes_say_they_need_no_key(served: tuple[web.Application, dict[str, Any]]) -> None:
    _, doc = served
    for path in ("/healthz", "/metrics", "/openapi.json"):
        if path in doc["paths"]:
            assert doc["paths"][path]["get"]["security"] == [], path


def test_the_old_invalid_ingestion_document_is_fixed() -> None:
    """A ``description`` once sat in a media type object, where OpenAPI allows none."""
    _, doc = served_document(APPS["ingestion"]())
    body = doc["paths"]["/v1/streams/{stream}/events"]["post"]["requestBody"]
    assert all(set(media) == {"schema"} for media in body["content"].values())


def schema_validator(doc: dict[str, Any], name: str) -> Any:
    """A validator of ``doc``'s component ``name``, its ``$ref``s resolved within ``doc``."""
    registry: Registry[Any] = Registry().with_resource("urn:doc", DRAFT4.create_resource(doc))
    return OAS30Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=registry)


def test_the_dashboard_sample_matches_the_documented_schema() -> None:
    """The browser tests' sample document is what the API documents (and so what the page is tested with)."""
    _, doc = served_document(APPS["monitoring dashboard"]())
    schema_validator(doc, "Dashboard").validate(json.loads(SAMPLE_DASHBOARD.read_text()))


def test_a_monitors_document_with_estimates_and_history_matches_the_documented_schema() -> None:
    """What ``Monitor`` really answers, not only the hand-made sample: estimates, windows, segments, periods."""
    monitor = estimating_monitor()
    document = json.loads(json.dumps(monitor.document))
    estimated = document["models"][0]["estimated"]
    assert estimated["current"] and estimated["windows"] and estimated["segments"], "nothing estimated to check"
    assert any(w["realized"] for w in estimated["windows"]) and len(document["history"]) == 3
    assert any(v is not None for v in document["series"]["estimated_accuracy"]["default@1"])
    _, doc = served_document(APPS["monitoring dashboard"]())
    schema_validator(doc, "Dashboard").validate(document)


def test_a_demo_event_matches_the_documented_schema() -> None:
    _, doc = served_document(APPS["ingestion"]())
    validator = schema_validator(doc, "demoEvent")
    validator.validate({"event_id": "e1", "event_time_ms": "2026-01-01T00:00:00Z", "x0": 1.5, "x1": None})
    assert not validator.is_valid({"x0": "high"}) and not validator.is_valid({"unknown": 1})
