"""API keys (eddy.runtime.auth): parsing, files, identities, roles, and how the HTTP servers and the CLI use them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from eddy.cli import main as cli
from eddy.cli import models as cli_models
from eddy.core.settings import Settings
from eddy.history import dlq_tools
from eddy.history.dlq_tools import REPLAY_FAILED, REPLAY_STARTED, REPLAYED, AuditError, ReplayResult, audited_replay
from eddy.runtime import auth
from eddy.runtime.auth import (
    OPEN,
    ApiKeys,
    AuthConfigError,
    Denied,
    Principal,
    client_headers,
    fingerprint,
    needed_role,
)
from eddy.runtime.http import identity, refused
from eddy.runtime.observability import Health
from eddy.runtime.server import MAX_POST_BYTES, HttpApi, serve_http
from eddy.services.model_registry.http import RegistryApi

from tests.unit.services.model_registry.test_registry_store import candidate, open_registry

VIEWER_KEY, OPERATOR_KEY, PRODUCER_KEY = "v-3f9a1c", "o-77d2e0", "p-c0ffee"
KEYS = f"vera:{VIEWER_KEY}:viewer, otto:{OPERATOR_KEY}:operator, {PRODUCER_KEY}:producer"


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


# -- parsing ---------------------------------------------------------------------------------------


def test_entries_with_and_without_a_name() -> None:
    keys = ApiKeys.parse(KEYS)
    assert [(k.name, k.role) for k in keys.keys] == [
        ("vera", "viewer"),
        ("otto", "operator"),
        (fingerprint(PRODUCER_KEY), "producer"),
    ]
    assert keys.identify(as_key(PRODUCER_KEY)) == Principal(fingerprint(PRODUCER_KEY), "producer")
    assert fingerprint(PRODUCER_KEY).startswith("key-") and PRODUCER_KEY not in fingerprint(PRODUCER_KEY)
    assert not ApiKeys.parse(" , ").enabled and not ApiKeys().enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3cret-key", "entry 1 is not NAME:KEY:ROLE"),
        ("a:s3cret-key:admin", "entry 1 is not NAME:KEY:ROLE"),
        ("ok:viewer, s3cret-key:", "entry 2 is not NAME:KEY:ROLE"),
        ("a:b:s3cret-key:viewer", "entry 1 is not NAME:KEY:ROLE"),
        ("bad name:s3cret-key:viewer", "entry 1: a name is"),
        ("a:s3cret-key:viewer, b:s3cret-key:operator", "entry 2 repeats the key"),
    ],
)
def test_bad_entries_are_named_by_position_never_by_their_key(text: str, message: str) -> None:
    with pytest.raises(AuthConfigError) as raised:
        ApiKeys.parse(text)
    assert message in str(raised.value) and "s3cret" not in str(raised.value)


def test_the_keys_file_adds_to_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    path.write_text(
        f"# mounted from the eddy-api-keys Secret\n\notto:{OPERATOR_KEY}:operator\n  {PRODUCER_KEY}:producer\n"
    )
    keys = ApiKeys.from_env({"EDDY_API_KEYS": f"vera:{VIEWER_KEY}:viewer", "EDDY_API_KEYS_FILE": str(path)})
    assert [k.name for k in keys.keys] == ["vera", "otto", fingerprint(PRODUCER_KEY)]
    assert ApiKeys.from_env({"EDDY_API_KEYS_FILE": str(path)}).identify(as_key(OPERATOR_KEY)) == Principal(
        "otto", "operator"
    )
    # Rotating a key: old and new under one name.
    rotated = ApiKeys.from_env({"EDDY_API_KEYS": f"otto:new-{OPERATOR_KEY}:operator", "EDDY_API_KEYS_FILE": str(path)})
    assert {rotated.identify(as_key(k)) for k in (OPERATOR_KEY, f"new-{OPERATOR_KEY}")} == {
        Principal("otto", "operator")
    }


def test_a_keys_file_that_is_missing_empty_or_bad_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        ApiKeys.from_env({"EDDY_API_KEYS_FILE": str(tmp_path / "nope")})
    (tmp_path / "empty").write_text("# nothing yet\n\n")
    with pytest.raises(AuthConfigError, match="holds no key"):
        ApiKeys.from_env({"EDDY_API_KEYS_FILE": str(tmp_path / "empty")})
    (tmp_path / "bad").write_text(f"vera:{VIEWER_KEY}:viewer\n\ns3cret-key:root\n")
    with pytest.raises(AuthConfigError, match=r"bad line 3 is not") as raised:
        ApiKeys.from_env({"EDDY_API_KEYS_FILE": str(tmp_path / "bad")})
    assert "s3cret" not in str(raised.value)
    (tmp_path / "twice").write_text(f"vera:{VIEWER_KEY}:viewer\n")
    with pytest.raises(AuthConfigError, match="repeats the key"):
        ApiKeys.from_env({"EDDY_API_KEYS": f"v:{VIEWER_KEY}:viewer", "EDDY_API_KEYS_FILE": str(tmp_path / "twice")})


def test_keys_are_not_kept_nor_shown() -> None:
    keys = ApiKeys.parse(KEYS)
    for shown in (repr(keys), str(keys), repr(keys.keys[0])):
        assert all(k not in shown for k in (VIEWER_KEY, OPERATOR_KEY, PRODUCER_KEY))


# -- identities and roles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": OPERATOR_KEY},
        {"x-api-key": f" {OPERATOR_KEY} "},
        {"Authorization": f"Bearer {OPERATOR_KEY}"},
        {"authorization": f"bearer {OPERATOR_KEY}"},
        {"Authorization": "Basic " + base64.b64encode(f"anyone:{OPERATOR_KEY}".encode()).decode()},
    ],
)
def test_a_key_is_taken_from_any_of_its_headers(headers: dict[str, str]) -> None:
    assert ApiKeys.parse(KEYS).identify(headers) == Principal("otto", "operator")


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": ""}, {"X-API-Key": "nope"}, {"Authorization": "Basic !!"}, {"Authorization": OPERATOR_KEY}],
)
def test_no_or_an_unknown_key_is_nobody(headers: dict[str, str]) -> None:
    assert ApiKeys.parse(KEYS).identify(headers) is None


def test_roles_decide_what_a_key_may_do() -> None:
    keys = ApiKeys.parse(KEYS)
    allowed = {
        (name, needed): isinstance(keys.check(as_key(key), needed, "act"), Principal)
        for name, key in (("viewer", VIEWER_KEY), ("operator", OPERATOR_KEY), ("producer", PRODUCER_KEY))
        for needed in auth.ROLES
    }
    assert allowed == {
        ("viewer", "producer"): False,
        ("viewer", "viewer"): True,
        ("viewer", "operator"): False,
        ("operator", "producer"): True,
        ("operator", "viewer"): True,
        ("operator", "operator"): True,
        ("producer", "producer"): True,
        ("producer", "viewer"): False,
        ("producer", "operator"): False,
    }
    assert (needed_role("GET"), needed_role("head"), needed_role("POST")) == ("viewer", "viewer", "operator")


def test_refusals_say_why_with_a_challenge_on_401() -> None:
    keys = ApiKeys.parse(KEYS)
    missing, unknown = keys.check({}, "viewer", "read it"), keys.check(as_key("nope"), "viewer", "read it")
    small = keys.check(as_key(VIEWER_KEY), "operator", "promote")
    assert isinstance(missing, Denied) and isinstance(unknown, Denied) and isinstance(small, Denied)
    assert (missing.status, unknown.status, small.status) == (401, 401, 403)
    assert "API key is required" in missing.message and "not valid" in unknown.message
    assert small.message == "the viewer role may not promote; that needs the operator role"
    assert {v for _, v in missing.headers} == {'Bearer realm="eddy"', 'Basic realm="eddy", charset="UTF-8"'}
    assert small.headers == [] and small.body() == {"error": small.message, "status": 403}


def test_without_keys_everything_is_open() -> None:
    assert ApiKeys().check({}, "operator", "promote") == OPEN and not OPEN.authenticated


def test_the_client_sends_eddy_api_key() -> None:
    assert client_headers({"EDDY_API_KEY": f" {OPERATOR_KEY}\n"}) == {"X-API-Key": OPERATOR_KEY}
    assert client_headers({}) == {} and client_headers({"EDDY_API_KEY": ""}) == {}


def test_aiohttp_apis_answer_401_with_challenges_and_403() -> None:
    keys = ApiKeys.parse(KEYS)
    assert refused(keys, make_mocked_request("POST", "/", headers=as_key(PRODUCER_KEY)), "producer", "send") is None
    missing = refused(keys, make_mocked_request("POST", "/"), "producer", "send records")
    assert missing is not None and missing.status == 401 and len(missing.headers.getall("WWW-Authenticate")) == 2
    small = refused(keys, make_mocked_request("POST", "/", headers=as_key(VIEWER_KEY)), "producer", "send records")
    assert small is not None and small.status == 403 and "WWW-Authenticate" not in small.headers
    assert refused(ApiKeys(), make_mocked_request("POST", "/"), "producer", "send") is None


# -- serve_http: the registry's and the dashboard's server -----------------------------------------


async def echo(request: web.Request) -> web.Response:
    await request.read()  # as every POST route does: a body over the limit is refused here
    return web.json_response({"identity": identity(request)})


ECHO = HttpApi(
    "echo",
    [web.get("/api/x", echo), web.post("/api/x", echo)],
    {"/api/x": {method: {"responses": {"200": {"description": "who"}}} for method in ("get", "post")}},
)


@pytest.fixture(scope="module")
def guarded() -> Iterator[httpx.Client]:
    server = serve_http("127.0.0.1", 0, Health("t"), ECHO, ApiKeys.parse(KEYS))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
    server.stop()


def test_health_metrics_and_the_openapi_document_stay_open(guarded: httpx.Client) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path


def test_routes_need_viewer_to_read_and_operator_to_change(guarded: httpx.Client) -> None:
    missing = guarded.get("/api/x")
    assert missing.status_code == 401 and missing.json()["status"] == 401
    assert missing.headers.get_list("WWW-Authenticate") == [
        'Bearer realm="eddy"',
        'Basic realm="eddy", charset="UTF-8"',
    ]
    assert guarded.get("/api/x", headers=as_key(PRODUCER_KEY)).status_code == 403
    assert guarded.get("/api/x", headers=as_key(VIEWER_KEY)).json() == {"identity": "vera"}
    forbidden = guarded.post("/api/x", json={}, headers=as_key(VIEWER_KEY))
    assert forbidden.status_code == 403 and forbidden.json()["error"] == (
        "the viewer role may not POST /api/x; that needs the operator role"
    )
    assert guarded.post("/api/x", json={}, headers=as_key(OPERATOR_KEY)).json() == {"identity": "otto"}
    assert guarded.get("/api/nope", headers=as_key(VIEWER_KEY)).status_code == 404


def test_a_refused_post_leaves_the_connection_usable(guarded: httpx.Client) -> None:
    """The keep-alive bug of the old server: a request after a refused POST (body unread) must be answered."""
    for _ in range(3):
        assert guarded.post("/api/x", content=b"x" * 50_000, headers=as_key(VIEWER_KEY)).status_code == 403
        assert guarded.get("/api/x", headers=as_key(VIEWER_KEY)).status_code == 200


def test_a_body_too_large_is_413_in_json(guarded: httpx.Client) -> None:
    too_large = guarded.post("/api/x", content=b"x" * (MAX_POST_BYTES + 1), headers=as_key(OPERATOR_KEY))
    assert too_large.status_code == 413 and too_large.json()["error"] == "request body too large"
    assert guarded.get("/api/x", headers=as_key(VIEWER_KEY)).status_code == 200


def test_a_method_the_route_does_not_take_is_405_in_json(guarded: httpx.Client) -> None:
    answer = guarded.delete("/api/x", headers=as_key(OPERATOR_KEY))
    assert answer.status_code == 405 and "DELETE is not allowed" in answer.json()["error"]
    assert set(answer.headers["Allow"].split(",")) >= {"GET", "POST"}


def test_a_client_cannot_set_the_identity(guarded: httpx.Client) -> None:
    spoofed = guarded.get("/api/x", params={"_identity": "otto"}, headers={**as_key(VIEWER_KEY), "X-Identity": "otto"})
    assert spoofed.json() == {"identity": "vera"}


def test_without_keys_the_routes_are_open_and_anonymous() -> None:
    server = serve_http("127.0.0.1", 0, Health("t"), ECHO, ApiKeys())
    try:
        assert httpx.get(f"{server.url}/api/x", timeout=30).json() == {"identity": None}
    finally:
        server.stop()


# -- the registry: the key's identity is the actor ------------------------------------------------


@pytest.fixture()
def registry_api(tmp_path: Path) -> Iterator[tuple[httpx.Client, RegistryApi]]:
    rest = RegistryApi()
    registry = open_registry(tmp_path)
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    rest.attach(registry, lambda: True)
    server = serve_http("127.0.0.1", 0, Health("model_registry"), rest.http_api(), ApiKeys.parse(KEYS))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, rest
    server.stop()


def test_a_body_cannot_claim_another_actor(registry_api: tuple[httpx.Client, RegistryApi]) -> None:
    client, _ = registry_api
    body = {"stream": "demo", "version": "default@2", "actor": "mallory", "_identity": "mallory"}
    promoted = client.post("/api/models/promote", json=body, headers=as_key(OPERATOR_KEY))
    assert promoted.status_code == 200, promoted.text
    # A fact is published as the registry's (followers trust only its alias tables), saying who asked.
    event = promoted.json()["event"]
    assert (event["actor"], event["details"]["by"]) == ("model_registry", "user:otto")
    retrain = client.post("/api/retrain", json={"stream": "demo", "actor": "mallory"}, headers=as_key(OPERATOR_KEY))
    assert retrain.json()["event"]["actor"] == "user:otto"
    audit = client.get("/api/audit", params={"stream": "demo"}, headers=as_key(VIEWER_KEY)).json()["events"]
    assert [(e["event_type"], e["actor"]) for e in audit[:2]] == [
        ("retrain_requested", "user:otto"),
        ("promoted", "user:otto"),
    ]
    assert audit[-1]["actor"] == "model_registry"  # the registration of version 1: the registry's own


def test_experiments_are_recorded_under_the_key(registry_api: tuple[httpx.Client, RegistryApi]) -> None:
    client, _ = registry_api
    body = {"stream": "demo", "models": ["default@1"], "data": {}, "metrics": {}, "created_by": "mallory"}
    assert client.post("/api/experiments", json=body, headers=as_key(VIEWER_KEY)).status_code == 403
    recorded = client.post("/api/experiments", json=body, headers=as_key(OPERATOR_KEY))
    assert recorded.status_code == 201 and recorded.json()["experiment"]["created_by"] == "otto"


def test_audit_entries_from_outside_are_operator_only_and_of_known_actions(
    registry_api: tuple[httpx.Client, RegistryApi],
) -> None:
    client, rest = registry_api
    entry = {"stream": "demo", "action": REPLAYED, "details": {"replayed": 3}}
    assert client.post("/api/audit", json=entry, headers=as_key(VIEWER_KEY)).status_code == 403
    recorded = client.post("/api/audit", json=entry, headers=as_key(OPERATOR_KEY))
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["event"]["actor"] == "user:otto" and recorded.json()["event"]["details"] == {"replayed": 3}
    # A request type would be applied by the registry when it reads its own topic: never taken from outside.
    for action in ("promotion_requested", "promoted", None):
        refused = client.post("/api/audit", json={**entry, "action": action}, headers=as_key(OPERATOR_KEY))
        assert refused.status_code == 400 and "action must be one of" in refused.json()["error"]
    bad = client.post("/api/audit", json={**entry, "details": [1]}, headers=as_key(OPERATOR_KEY))
    assert bad.status_code == 400
    assert rest.registry is not None
    assert [e["event_type"] for e in rest.registry.store.audit("demo", 1)] == [REPLAYED]


# -- the CLI ---------------------------------------------------------------------------------------


class FakeRegistry:
    """Answers like a registry with keys: 401 without one, 403 for a viewer's change, else 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        action = f"{request.method} {request.url.path}"
        verdict = ApiKeys.parse(KEYS).check(dict(request.headers), needed_role(request.method), action)
        if isinstance(verdict, Denied):
            return httpx.Response(verdict.status, json=verdict.body(), headers=verdict.headers)
        event = {"event_id": "e1", "details": {}, "actor": f"user:{verdict.name}"}
        return httpx.Response(200, json={"event": event, "published": True})


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    registry = FakeRegistry()
    transport = httpx.MockTransport(registry)
    monkeypatch.setattr(cli_models, "make_client", lambda url: httpx.Client(base_url=url, transport=transport))
    monkeypatch.setenv(cli_models.URL_ENV, "http://registry.test")
    monkeypatch.delenv(auth.CLIENT_KEY_ENV, raising=False)
    return registry


def test_the_cli_sends_the_key_and_says_why_in_one_line(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["retrain", "demo"]) == cli.EXIT_FAILURE
    assert "X-API-Key" not in fake.requests[-1].headers
    assert capsys.readouterr().err.endswith("(HTTP 401: set EDDY_API_KEY)\n")
    monkeypatch.setenv(auth.CLIENT_KEY_ENV, "nope")
    assert cli.main(["retrain", "demo"]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err == (
        "eddy: error: the API key is not valid (HTTP 401: EDDY_API_KEY is not a key the model registry knows)\n"
    )
    monkeypatch.setenv(auth.CLIENT_KEY_ENV, VIEWER_KEY)
    assert cli.main(["retrain", "demo"]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err == (
        "eddy: error: the viewer role may not POST /api/retrain; that needs the operator role "
        "(HTTP 403: EDDY_API_KEY needs another role)\n"
    )
    monkeypatch.setenv(auth.CLIENT_KEY_ENV, OPERATOR_KEY)
    assert cli.main(["retrain", "demo"]) == 0
    assert fake.requests[-1].headers["X-API-Key"] == OPERATOR_KEY


def test_a_replay_is_audited_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    result = ReplayResult("demo", "demo.dlq", "eddy-dlq-replay-demo", False, 3, 2, {"demo.events": 2})
    replays: list[Any] = []

    def replay(*args: Any, **kw: Any) -> ReplayResult:
        replays.append(args)
        return result

    monkeypatch.setattr(dlq_tools, "replay_dlq", replay)
    entries: list[tuple[str, dict[str, Any]]] = []
    assert audited_replay(Settings(), "demo", lambda a, d: entries.append((a, d)), ["contract"]) is result
    assert [a for a, _ in entries] == [REPLAY_STARTED, REPLAYED] and len(replays) == 1
    assert entries[0][1]["reasons"] == ["contract"] and entries[1][1]["replayed"] == 2

    def refuse(action: str, details: dict[str, Any]) -> None:
        raise AuditError("the viewer role may not POST /api/audit")

    with pytest.raises(AuditError, match="nothing replayed: the audit log must record a replay first: the viewer"):
        audited_replay(Settings(), "demo", refuse)
    assert len(replays) == 1

    def refuse_after(action: str, details: dict[str, Any]) -> None:
        if action == REPLAYED:
            raise AuditError("the registry is gone")

    with pytest.raises(AuditError, match=r"^replayed 2 of 3 .* but the audit log did not record it: the registry"):
        audited_replay(Settings(), "demo", refuse_after)


def test_a_failed_replay_is_audited_and_its_error_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kw: Any) -> ReplayResult:
        raise dlq_tools.DlqError("no topic 'demo.dlq'")

    monkeypatch.setattr(dlq_tools, "replay_dlq", broken)
    entries: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(dlq_tools.DlqError, match="no topic"):
        audited_replay(Settings(), "demo", lambda a, d: entries.append((a, d)))
    assert [a for a, _ in entries] == [REPLAY_STARTED, REPLAY_FAILED]
    assert entries[1][1]["error"] == "DlqError: no topic 'demo.dlq'"
