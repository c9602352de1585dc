"""eddy's four HTTP APIs, each started as its real service against the test broker, with API keys of every role.

Used by the fuzz (``test_http_fuzz.py``) and the role matrix (``test_http_roles.py``). Each API is the
service process ``python -m eddy.services.<name>`` with ``EDDY_API_KEYS`` holding one key per role
(:data:`KEYS`); :func:`running_api` yields the base URL of the API once it answers, and the service's log.

:data:`ROUTE_CLASSES` says which role each documented operation needs, per API: ``open`` (no key:
``/healthz``, ``/metrics``, ``/openapi.json``), ``read`` (viewer), ``produce`` (producer) or ``operate``
(operator). The tests compare it with each API's served OpenAPI document both ways, so a route added
to an API without a line here fails them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eddy.core.settings import Settings
from eddy.runtime.auth import OPERATOR, PRODUCER, VIEWER, allows

from tests.helpers import service, wait_until

# One key per role, each with a name: the name is the actor the registry records for the operator's changes.
KEYS = {VIEWER: "fuzz-viewer-7c1d", PRODUCER: "fuzz-producer-2be9", OPERATOR: "fuzz-operator-94fa"}
NAMES = {VIEWER: "vera", PRODUCER: "pia", OPERATOR: "otto"}
API_KEYS = ",".join(f"{NAMES[role]}:{key}:{role}" for role, key in KEYS.items())
WRONG_KEY = "not-a-configured-key"

OPEN, READ, PRODUCE, OPERATE = "open", "read", "produce", "operate"
# The role each class of route needs (eddy.runtime.auth); open routes need none.
NEEDED = {READ: VIEWER, PRODUCE: PRODUCER, OPERATE: OPERATOR}
OPS = {("get", "/healthz"): OPEN, ("get", "/metrics"): OPEN, ("get", "/openapi.json"): OPEN}

ROUTE_CLASSES: dict[str, dict[tuple[str, str], str]] = {
    "ingestion": {
        **OPS,
        ("post", "/v1/streams/{stream}/events"): PRODUCE,
        ("post", "/v1/streams/{stream}/feedback"): PRODUCE,
    },
    "inference": {("get", "/openapi.json"): OPEN, ("post", "/v1/streams/{stream}/predict"): PRODUCE},
    "model_registry": {
        **OPS,
        ("get", "/api/models"): READ,
        ("get", "/api/models/show"): READ,
        ("get", "/api/models/diff"): READ,
        ("get", "/api/audit"): READ,
        ("post", "/api/audit"): OPERATE,
        ("post", "/api/models/promote"): OPERATE,
        ("post", "/api/models/rollback"): OPERATE,
        ("post", "/api/models/archive"): OPERATE,
        ("post", "/api/retrain"): OPERATE,
        ("get", "/api/experiments"): READ,
        ("get", "/api/experiments/show"): READ,
        ("post", "/api/experiments"): OPERATE,
    },
    "monitoring": {
        **OPS,
        ("get", "/dashboard"): READ,
        ("get", "/dashboard/"): READ,
        ("get", "/dashboard/app.js"): READ,
        ("get", "/dashboard/style.css"): READ,
        ("get", "/api/streams"): READ,
        ("get", "/api/dashboard"): READ,
    },
}
APIS = tuple(ROUTE_CLASSES)


def expected_status(route_class: str, role: str | None) -> str:
    """What a key of ``role`` (None: no key; ``wrong``: a key not configured) gets: ``allowed``, ``401`` or ``403``.

    >>> expected_status("read", "producer"), expected_status("read", "operator"), expected_status("produce", None)
    ('403', 'allowed', '401')
    >>> expected_status("open", "wrong")
    'allowed'
    """
    if route_class == OPEN:
        return "allowed"
    if role is None or role == "wrong":
        return "401"
    return "allowed" if allows(role, NEEDED[route_class]) else "403"


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """The ``(method, path)`` of every operation of an OpenAPI document."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(method, path) for path, item in doc["paths"].items() for method in item if method in methods}


@dataclass(frozen=True)
class RunningApi:
    """One API being served: its name, its base URL, the service's health URL and log."""

    name: str
    url: str
    service_url: str
    log: Path
    proc: subprocess.Popen[bytes]


def keyed(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}


@contextmanager
def running_api(name: str, settings: Settings, tmp_path: Path, **env: str) -> Iterator[RunningApi]:
    """The service of API ``name`` (one of :data:`APIS`), with :data:`API_KEYS`, once its API answers."""
    (stream,) = settings.streams
    with service(name, settings, tmp_path, EDDY_API_KEYS=API_KEYS, **env) as (proc, url, log):
        base = url
        if name == "inference":
            # The prediction API is a server of its own; inference reports its URL in /healthz.
            wait_until(lambda: "predict_url" in httpx.get(f"{url}/healthz", timeout=5).json(), 40, 0.2, "predict_url")
            base = httpx.get(f"{url}/healthz", timeout=5).json()["predict_url"]
        elif name == "model_registry":
            # The registry's routes answer 503 until it has started.
            wait_until(
                lambda: (
                    httpx.get(
                        f"{url}/api/models", params={"stream": stream}, headers=keyed(VIEWER), timeout=5
                    ).status_code
                    == 200
                ),
                40,
                0.2,
                "the registry API",
            )
        elif name == "monitoring":
            wait_until(
                lambda: (
                    httpx.get(
                        f"{url}/api/dashboard", params={"stream": stream}, headers=keyed(VIEWER), timeout=5
                    ).status_code
                    == 200
                ),
                40,
                0.2,
                "the dashboard document",
            )
        # Ready (doing its work), not only alive: the fuzz counts a 503 from /healthz as a failure.
        wait_until(
            lambda: httpx.get(f"{url}/healthz", params={"ready": "1"}, timeout=5).status_code == 200, 40, 0.2, "ready"
        )
        yield RunningApi(name, base, url, log, proc)
