"""The REST surface against the real process (shared per module, distinct subjects per test)."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

CT = "application/vnd.schemaregistry.v1+json"


def record(*fields: str, name: str = "R") -> str:
    return json.dumps(
        {"type": "record", "name": name, "fields": [{"name": f, "type": "string", "default": ""} for f in fields]}
    )


def post(http: httpx.Client, path: str, body: object, content_type: str = CT) -> httpx.Response:
    return http.post(path, content=json.dumps(body), headers={"Content-Type": content_type})


def register(http: httpx.Client, subject: str, schema: str) -> dict[str, int]:
    response = post(http, f"/subjects/{subject}/versions", {"schema": schema})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CT
    return response.json()


def test_root_types_and_health(http: httpx.Client) -> None:
    assert http.get("/").json() == {}
    assert http.get("/schemas/types").json() == ["AVRO"]
    health = http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert http.get("/contexts").json() == ["."]


def test_register_is_idempotent_and_ids_are_shared(http: httpx.Client) -> None:
    first = register(http, "api-a", record("x"))
    assert first["version"] == 1
    assert register(http, "api-a", record("x")) == first
    spaced = json.dumps(json.loads(record("x")), indent=4)
    assert register(http, "api-a", spaced) == first
    other = register(http, "api-b", record("x"))
    assert other["id"] == first["id"] and other["version"] == 1
    second = register(http, "api-a", record("x", "y"))
    assert second["id"] != first["id"] and second["version"] == 2


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
        "application/json; charset=utf-8",
    ],
)
def test_accepted_content_types(http: httpx.Client, content_type: str) -> None:
    response = post(http, "/subjects/api-ct/versions", {"schema": '"string"'}, content_type)
    assert response.status_code == 200


def test_reads(http: httpx.Client) -> None:
    v1 = register(http, "api-read", record("x"))
    v2 = register(http, "api-read", record("x", "y"))
    assert http.get("/subjects/api-read/versions").json() == [1, 2]
    latest = http.get("/subjects/api-read/versions/latest").json()
    assert latest == {
        "subject": "api-read",
        "version": 2,
        "id": v2["id"],
        "schema": json.dumps(json.loads(record("x", "y")), separators=(",", ":")),
    }
    assert http.get("/subjects/api-read/versions/-1").json() == latest
    assert http.get("/subjects/api-read/versions/1").json()["id"] == v1["id"]
    raw = http.get("/subjects/api-read/versions/1/schema")
    assert raw.json() == json.loads(record("x"))
    assert http.get("/subjects/api-read/versions/1/referencedby").json() == []
    by_id = http.get(f"/schemas/ids/{v1['id']}")
    assert by_id.json() == {"schema": latest["schema"].replace(',{"name":"y","type":"string","default":""}', "")}
    assert "schemaType" not in by_id.json()
    assert http.get(f"/schemas/ids/{v1['id']}", params={"subject": "api-read"}).json() == by_id.json()
    assert http.get(f"/schemas/ids/{v1['id']}/schema").json() == json.loads(record("x"))
    assert {"subject": "api-read", "version": 1} in http.get(f"/schemas/ids/{v1['id']}/versions").json()
    assert "api-read" in http.get(f"/schemas/ids/{v1['id']}/subjects").json()
    assert "api-read" in http.get("/subjects").json()
    listed = http.get("/schemas", params={"subjectPrefix": "api-read", "latestOnly": "true"}).json()
    assert [s["version"] for s in listed] == [2]


def test_lookup(http: httpx.Client) -> None:
    created = register(http, "api-lookup", record("x"))
    found = post(http, "/subjects/api-lookup", {"schema": record("x")})
    assert found.status_code == 200
    assert found.json()["id"] == created["id"] and found.json()["version"] == 1
    assert found.json()["subject"] == "api-lookup"
    missing = post(http, "/subjects/api-lookup", {"schema": record("nope")})
    assert (missing.status_code, missing.json()["error_code"]) == (404, 40403)
    no_subject = post(http, "/subjects/api-lookup-none", {"schema": record("x")})
    assert (no_subject.status_code, no_subject.json()["error_code"]) == (404, 40401)


def test_soft_and_permanent_delete(http: httpx.Client) -> None:
    register(http, "api-del", record("d1"))
    v2 = register(http, "api-del", record("d1", "d2"))
    early = http.delete("/subjects/api-del", params={"permanent": "true"})
    assert (early.status_code, early.json()["error_code"]) == (404, 40405)
    assert http.delete("/subjects/api-del/versions/2").json() == 2
    again = http.delete("/subjects/api-del/versions/2")
    assert (again.status_code, again.json()["error_code"]) == (404, 40406)
    live = http.delete("/subjects/api-del/versions/1", params={"permanent": "true"})
    assert (live.status_code, live.json()["error_code"]) == (404, 40407)
    assert http.get("/subjects/api-del/versions").json() == [1]
    assert http.get("/subjects/api-del/versions", params={"deleted": "true"}).json() == [1, 2]
    assert http.get("/subjects/api-del/versions/2", params={"deleted": "true"}).json()["version"] == 2
    assert http.get(f"/schemas/ids/{v2['id']}").status_code == 200
    assert http.delete("/subjects/api-del").json() == [1]
    assert "api-del" not in http.get("/subjects").json()
    assert "api-del" in http.get("/subjects", params={"deleted": "true"}).json()
    soft_again = http.delete("/subjects/api-del")
    assert (soft_again.status_code, soft_again.json()["error_code"]) == (404, 40404)
    assert http.delete("/subjects/api-del", params={"permanent": "true"}).json() == [1, 2]
    gone = http.get(f"/schemas/ids/{v2['id']}")
    assert (gone.status_code, gone.json()["error_code"]) == (404, 40403)
    unknown = http.delete("/subjects/api-del")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, 40401)


def test_config_endpoints(http: httpx.Client) -> None:
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    unset = http.get("/config/api-cfg")
    assert (unset.status_code, unset.json()["error_code"]) == (404, 40408)
    assert http.get("/config/api-cfg", params={"defaultToGlobal": "true"}).json() == {"compatibilityLevel": "BACKWARD"}
    put = http.put("/config/api-cfg", json={"compatibility": "FULL_TRANSITIVE"})
    assert put.json() == {"compatibility": "FULL_TRANSITIVE"}
    assert http.get("/config/api-cfg").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    bad = http.put("/config/api-cfg", json={"compatibility": "SIDEWAYS"})
    assert (bad.status_code, bad.json()["error_code"]) == (422, 42203)
    assert http.delete("/config/api-cfg").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    again = http.delete("/config/api-cfg")
    assert (again.status_code, again.json()["error_code"]) == (404, 40401)


def test_mode(http: httpx.Client) -> None:
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    assert http.put("/mode", json={"mode": "READWRITE"}).json() == {"mode": "READWRITE"}
    assert http.put("/mode", json={"mode": "IMPORT"}).json()["error_code"] == 42205
    assert http.put("/mode", json={"mode": "BOGUS"}).json()["error_code"] == 42204
    assert http.get("/mode/api-mode").json()["error_code"] == 40409


def test_compatibility_endpoints(http: httpx.Client) -> None:
    fresh = post(http, "/compatibility/subjects/api-compat-none/versions/latest", {"schema": record("x")})
    assert fresh.json() == {"is_compatible": True}
    missing_version = post(http, "/compatibility/subjects/api-compat-none/versions/3", {"schema": record("x")})
    assert missing_version.json()["error_code"] == 40401
    register(http, "api-compat", record("x"))
    missing_version = post(http, "/compatibility/subjects/api-compat/versions/3", {"schema": record("x")})
    assert missing_version.json()["error_code"] == 40402
    breaking = json.dumps({"type": "record", "name": "R", "fields": [{"name": "z", "type": "int"}]})
    verdict = post(http, "/compatibility/subjects/api-compat/versions/latest", {"schema": breaking})
    assert verdict.json() == {"is_compatible": False}
    verbose = post(http, "/compatibility/subjects/api-compat/versions/1?verbose=true", {"schema": breaking})
    assert verbose.json()["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in verbose.json()["messages"])
    ok = post(http, "/compatibility/subjects/api-compat/versions?verbose=true", {"schema": record("x", "y")})
    assert ok.json() == {"is_compatible": True, "messages": []}
    invalid = post(http, "/compatibility/subjects/api-compat/versions?verbose=true", {"schema": "{"})
    assert invalid.json()["is_compatible"] is False and invalid.json()["messages"]


def test_subject_names_are_url_decoded(http: httpx.Client) -> None:
    created = register(http, "team%2Forders-value", '"long"')
    assert http.get("/subjects/team%2Forders-value/versions/1").json()["subject"] == "team/orders-value"
    assert http.get(f"/schemas/ids/{created['id']}/subjects").json() == ["team/orders-value"]


def test_metrics_exposed(http: httpx.Client) -> None:
    http.get("/schemas/ids/999999")
    text = http.get("/metrics").text
    assert 'eddy_schema_registry_requests_total{method="GET",route="/schemas/ids/{id}",status="404"}' in text
    assert "eddy_schema_registry_request_duration_seconds_bucket" in text
