"""``eddy models ...`` and ``eddy retrain`` against a mock transport: requests sent, output printed, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.cli import main as cli
from eddy.cli import models as cli_models

URL = "http://registry.test"

VERSIONS = {
    "stream": "demo",
    "champion": "default@1",
    "challenger": "default@2",
    "canary": 0.1,
    "versions": [
        {
            "version": "default@1",
            "alias": "champion",
            "parent": None,
            "created_at_ms": 1_700_000_000_000,
            "created_by": "model_registry",
            "learned_count": 0,
            "online_learned_count": 1234,
            "metrics": {},
        },
        {
            "version": "default@2",
            "alias": "challenger",
            "parent": "default@1",
            "created_at_ms": 1_700_000_100_000,
            "created_by": "retraining",
            "learned_count": 300,
            "online_learned_count": None,
            "metrics": {"holdout.accuracy": 0.91234},
        },
    ],
}


class FakeRegistry:
    """Answers like the registry, and remembers every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.params.get("stream") == "nope":
            return httpx.Response(404, json={"error": "unknown stream 'nope'; known: demo", "status": 404})
        if path == "/api/models":
            return httpx.Response(200, json=VERSIONS)
        if path == "/api/models/promote":
            body = json.loads(request.content)
            if body["version"] == "default@1":
                return httpx.Response(409, json={"error": "default@1 is already the champion", "status": 409})
            details = {"previous": "default@1"}
            event = {"event_id": "e1", "model_name": "default", "model_version": 2, "details": details}
            return httpx.Response(200, json={"event": event, "published": True, "roles": {}})
        if path == "/api/models/rollback":
            event = {"event_id": "e2", "model_name": "default", "model_version": 1, "details": {"from": "default@2"}}
            return httpx.Response(200, json={"event": event, "published": False, "roles": {}})
        if path in ("/api/retrain", "/api/models/archive"):
            return httpx.Response(200, json={"event": {"event_id": "e3", "details": {}}, "published": True})
        return httpx.Response(404, json={"error": "not found"})


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    registry = FakeRegistry()
    transport = httpx.MockTransport(registry)
    monkeypatch.setattr(cli_models, "make_client", lambda url: httpx.Client(base_url=url, transport=transport))
    monkeypatch.setenv(cli_models.URL_ENV, URL)
    return registry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_a_table(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list", "demo")
    assert code == 0
    lines = out.splitlines()
    assert "champion default@1" in lines[0] and lines[1].split()[:3] == ["VERSION", "ALIAS", "PARENT"]
    assert lines[2].split()[:2] == ["default@1", "champion"] and "1234" in lines[2]
    assert "holdout.accuracy 0.9123" in lines[3]
    (request,) = fake.requests
    assert str(request.url) == f"{URL}/api/models?stream=demo"


def test_json_output_is_the_document(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "list", "demo", "--json")
    assert code == 0 and json.loads(out) == VERSIONS


def test_promote_posts_version_reason_and_actor(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "promote", "demo", "default@2", "--reason", "looks better")
    assert code == 0 and "default@2 is the champion of demo (was default@1)" in out
    body = json.loads(fake.requests[0].content)
    assert fake.requests[0].method == "POST" and fake.requests[0].url.path == "/api/models/promote"
    assert body["stream"] == "demo" and body["version"] == "default@2" and body["reason"] == "looks better"
    assert body["actor"]


def test_rollback_sends_to_and_says_when_unpublished(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "rollback", "demo", "--to", "default@1")
    assert code == 0 and "default@1 is the champion of demo again (default@2 archived)" in out
    assert "not yet acknowledged" in out
    assert json.loads(fake.requests[0].content)["to"] == "default@1"
    run(capsys, "models", "rollback", "demo")
    assert "to" not in json.loads(fake.requests[1].content)


def test_archive_and_retrain(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "models", "archive", "demo", "default@2")[0] == 0
    code, out, _ = run(capsys, "retrain", "demo", "--reason", "drift")
    assert code == 0 and "retraining of demo requested" in out
    assert [r.url.path for r in fake.requests] == ["/api/models/archive", "/api/retrain"]
    assert json.loads(fake.requests[1].content)["reason"] == "drift"


def test_registry_errors_are_one_line(fake: FakeRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "promote", "demo", "default@1")
    assert code == cli.EXIT_FAILURE and err == "eddy: error: default@1 is already the champion (HTTP 409)\n"
    code, _, err = run(capsys, "models", "list", "nope")
    assert code == cli.EXIT_FAILURE and "unknown stream 'nope'" in err


def test_unreachable_registry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    monkeypatch.setattr(cli_models, "make_client", lambda url: httpx.Client(base_url=url, transport=transport))
    code, _, err = run(capsys, "models", "list", "demo", "--url", "http://127.0.0.1:1")
    assert code == cli.EXIT_FAILURE and "cannot reach the model registry at http://127.0.0.1:1" in err


def test_url_from_the_running_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cli_models.URL_ENV, raising=False)
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path))
    with pytest.raises(cli_models.CliError, match="eddy up"):
        cli_models.registry_url(None)
    stack: dict[str, Any] = {
        "supervisor_pid": os.getpid(),
        "services": {"model_registry": {"url": "http://127.0.0.1:5555/"}},
    }
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    assert cli_models.registry_url(None) == "http://127.0.0.1:5555"
    assert cli_models.registry_url("http://x:1/") == "http://x:1"
    monkeypatch.setenv(cli_models.URL_ENV, "http://env:2")
    assert cli_models.registry_url(None) == "http://env:2"
