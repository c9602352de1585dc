"""API keys and roles on every route of every HTTP API, against the real services (eddy.runtime.auth).

For each API (ingestion, inference's predictions, the model registry, the monitoring dashboard), the
operations are read from the document the service serves at ``/openapi.json``, and each must have a
route class in ``http_apis.ROUTE_CLASSES`` (and each class there a documented operation): a new route
without a class fails here. Each operation is then called with no key, a key that is not configured,
and a key of each role (viewer, producer, operator), each way a client may present it (``X-API-Key``,
``Authorization: Bearer``, HTTP Basic), and answered exactly as ``eddy.runtime.auth`` documents:

- open routes (``/healthz``, ``/metrics``, ``/openapi.json``): everyone;
- read (GET of the registry and the dashboard): viewer and operator; producer 403;
- produce (ingestion, predictions): producer and operator; viewer 403;
- operate (the registry's POSTs): operator only; viewer and producer 403;
- no key or an unknown one: 401 with the ``WWW-Authenticate`` challenges; every 401 and 403 a JSON
  error saying why (a 403 names the role needed), and none repeats the key it was sent.

9 requests per operation (31 operations, 279 requests); each service starts once per API.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.core.settings import Settings
from eddy.runtime.auth import CHALLENGES, OPERATOR, PRODUCER, VIEWER

from tests.helpers import create_topics
from tests.integration.http_apis import (
    APIS,
    KEYS,
    NEEDED,
    ROUTE_CLASSES,
    WRONG_KEY,
    documented_operations,
    expected_status,
    running_api,
)

pytestmark = pytest.mark.integration


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{key}".encode()).decode()}


# (label, role or None for no key, "wrong" for a key not configured, headers): every way a key is presented.
CREDENTIALS: list[tuple[str, str | None, dict[str, str]]] = [
    ("no key", None, {}),
    ("a wrong key (Bearer)", "wrong", {"Authorization": f"Bearer {WRONG_KEY}"}),
    ("a wrong key (X-API-Key)", "wrong", {"X-API-Key": WRONG_KEY}),
    ("viewer (X-API-Key)", VIEWER, {"X-API-Key": KEYS[VIEWER]}),
    ("viewer (Basic)", VIEWER, basic(KEYS[VIEWER])),
    ("producer (X-API-Key)", PRODUCER, {"X-API-Key": KEYS[PRODUCER]}),
    ("producer (Bearer)", PRODUCER, {"Authorization": f"Bearer {KEYS[PRODUCER]}"}),
    ("operator (X-API-Key)", OPERATOR, {"X-API-Key": KEYS[OPERATOR]}),
    ("operator (Bearer)", OPERATOR, {"Authorization": f"Bearer {KEYS[OPERATOR]}"}),
]


def request_for(method: str, path: str, operation: dict[str, Any], stream: str) -> dict[str, Any]:
    """A request of ``operation`` that its route would take: the stream named where the API asks for one."""
    query = {
        p["name"]: stream if p["name"] == "stream" else "default@1"
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    body: dict[str, Any] | None = None
    if "requestBody" in operation:
        streams = path.startswith("/v1/streams/")
        body = {"x0": 1.0, "x1": 2.0, "x2": 3.0} if streams else {"stream": stream, "reason": "role matrix"}
        if path.endswith("/feedback"):
            body = {"event_id": "roles-1", "label": True}
    return {
        "method": method.upper(),
        "url": path.replace("{stream}", stream),
        "params": query,
        **({"json": body} if body is not None else {}),
    }


@pytest.mark.parametrize("api", APIS)
def test_every_route_answers_each_role_as_documented(api: str, settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with running_api(api, settings, tmp_path) as running, httpx.Client(base_url=running.url, timeout=30) as client:
        doc = client.get("/openapi.json").json()
        documented = documented_operations(doc)
        classes = ROUTE_CLASSES[api]
        assert documented == set(classes), (
            f"routes without a class: {sorted(documented - set(classes))}; "
            f"classes without a route: {sorted(set(classes) - documented)}"
        )
        problems = []
        for method, path in sorted(documented):
            operation = doc["paths"][path][method]
            for label, role, headers in CREDENTIALS:
                expected = expected_status(classes[(method, path)], role)
                response = client.request(**request_for(method, path, operation, stream), headers=headers)
                got = "allowed" if response.status_code not in (401, 403) else str(response.status_code)
                where = f"{method.upper()} {path} with {label}"
                if got != expected:
                    problems.append(f"{where}: expected {expected}, got {response.status_code} {response.text[:200]}")
                    continue
                if got == "allowed":
                    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
                    continue
                if not response.json().get("error"):
                    problems.append(f"{where}: {got} without a reason: {response.text[:200]}")
                needed = NEEDED.get(classes[(method, path)])
                if got == "403" and f"needs the {needed} role" not in response.json().get("error", ""):
                    problems.append(f"{where}: 403 without naming the role needed ({needed}): {response.text[:200]}")
                if got == "401" and response.headers.get_list("WWW-Authenticate") != list(CHALLENGES):
                    problems.append(f"{where}: 401 without the challenges: {response.headers}")
                if any(key in response.text for key in (*KEYS.values(), WRONG_KEY)):
                    problems.append(f"{where}: the answer repeats a key")
        assert not problems, "\n".join(problems)
        assert running.proc.poll() is None
