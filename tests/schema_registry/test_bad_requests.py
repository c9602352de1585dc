"""Malformed and invalid requests get Confluent's error codes and never kill the process."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import RegistryProcess

pytestmark = pytest.mark.timeout(60)

JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
GOOD = json.dumps({"schema": '"string"'})


def expect(response: httpx.Response, status: int, error_code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == error_code, body
    assert isinstance(body["message"], str) and body["message"]
    assert response.headers["content-type"] == "application/vnd.schemaregistry.v1+json"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error_code"),
    [
        ("POST", "/subjects/bad/versions", "{not json", 400, 400),
        ("POST", "/subjects/bad/versions", "", 422, 422),
        ("POST", "/subjects/bad/versions", "[1, 2]", 400, 400),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": '{"type": "recrd"}'}), 422, 42201),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": "not json at all"}), 422, 42201),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": '"int"', "schemaType": "JSON"}), 422, 42201),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": '"int"', "schemaType": "PROTOBUF"}), 422, 42201),
        (
            "POST",
            "/subjects/bad/versions",
            json.dumps({"schema": '"int"', "references": [{"name": "a", "subject": "b", "version": 1}]}),
            422,
            42201,
        ),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": '"int"', "id": 5}), 422, 42205),
        ("POST", "/subjects/bad/versions", json.dumps({"schema": 42}), 422, 42201),
        ("GET", "/subjects/bad/versions", None, 404, 40401),
        ("GET", "/subjects/bad/versions/latest", None, 404, 40401),
        ("GET", "/subjects/bad/versions/abc", None, 422, 42202),
        ("GET", "/subjects/bad/versions/0", None, 422, 42202),
        ("GET", "/subjects/bad/versions/-2", None, 422, 42202),
        ("GET", "/subjects/bad/versions/99999999999", None, 422, 42202),
        ("DELETE", "/subjects/bad/versions/abc", None, 422, 42202),
        ("POST", "/compatibility/subjects/bad/versions/abc", GOOD, 422, 42202),
        ("GET", "/schemas/ids/424242", None, 404, 40403),
        ("GET", "/schemas/ids/notanumber", None, 404, 40403),
        ("GET", "/schemas/ids/424242/schema", None, 404, 40403),
        ("GET", "/schemas/ids/424242/versions", None, 404, 40403),
        ("PUT", "/config", json.dumps({"compatibility": "MOSTLY"}), 422, 42203),
        ("PUT", "/config/bad", json.dumps({"compatibility": 7}), 422, 42203),
        ("PUT", "/config/bad", json.dumps({}), 422, 42203),
        ("GET", "/config/bad", None, 404, 40408),
        ("DELETE", "/config/bad", None, 404, 40401),
        ("DELETE", "/subjects/bad", None, 404, 40401),
        ("GET", "/no/such/path", None, 404, 404),
        ("PATCH", "/subjects", None, 405, 405),
        ("GET", "/subjects?offset=x", None, 400, 400),
    ],
)
def test_error_codes(
    http: httpx.Client, method: str, path: str, body: str | None, status: int, error_code: int
) -> None:
    response = http.request(method, path, content=body, headers=JSON if body is not None else None)
    expect(response, status, error_code)


def test_unsupported_content_type(http: httpx.Client) -> None:
    response = http.post("/subjects/bad-ct/versions", content=GOOD, headers={"Content-Type": "text/plain"})
    expect(response, 415, 415)


def test_huge_body_is_rejected_with_413(http: httpx.Client) -> None:
    huge = b'{"schema": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    response = http.post("/subjects/bad-huge/versions", content=huge, headers=JSON)
    expect(response, 413, 413)


def test_huge_chunked_body_is_rejected_with_413(http: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"schema": "'
        for _ in range(12):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = http.post("/subjects/bad-huge/versions", content=chunks(), headers=JSON)
    expect(response, 413, 413)


def test_deeply_nested_json_does_not_crash(http: httpx.Client) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    response = http.post("/subjects/bad-deep/versions", content=json.dumps({"schema": nested}), headers=JSON)
    assert response.status_code == 422
    response = http.post("/subjects/bad-deep/versions", content=nested, headers=JSON)
    assert response.status_code in (400, 422)


def test_process_survives_everything(http: httpx.Client, shared_registry: RegistryProcess) -> None:
    for raw in (b"\xff\xfe\x00garbage", b"null", b"true", b'{"schema": null}', b'{"schema": "\\"int\\"", "x": {}}'):
        http.post("/subjects/bad-junk/versions", content=raw, headers=JSON)
    assert shared_registry.alive()
    assert http.get("/healthz").json()["status"] == "ok"
    assert http.post("/subjects/bad-after/versions", content=GOOD, headers=JSON).status_code == 200
    assert not any("Traceback" in line for line in shared_registry.log_lines)
