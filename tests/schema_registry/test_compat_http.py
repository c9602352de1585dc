"""A handful of the compatibility table cases, through the HTTP API."""

from __future__ import annotations

import json

import httpx
import pytest

from .compat_cases import CASES, Case

pytestmark = pytest.mark.timeout(60)

SELECTED = {
    "add-field-without-default",
    "remove-field-no-default-forward",
    "promote-int-to-long",
    "rename-field-with-alias",
    "enum-remove-symbol-reader-default",
    "union-branch-removed",
    "backward-transitive-vs-all",
    "forward-vs-latest-only",
    "full-transitive-vs-all",
}
HTTP_CASES = [c for c in CASES if c.id in SELECTED]


def post(http: httpx.Client, path: str, body: object) -> httpx.Response:
    return http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def test_selection_is_present() -> None:
    assert len(HTTP_CASES) == len(SELECTED)


@pytest.mark.parametrize("case", HTTP_CASES, ids=[c.id for c in HTTP_CASES])
def test_case_over_http(http: httpx.Client, case: Case) -> None:
    subject = f"compat-{case.id}"
    # History is loaded without checks, then the case's level is put in force.
    assert http.put(f"/config/{subject}", json={"compatibility": "NONE"}).status_code == 200
    for schema in case.history:
        assert post(http, f"/subjects/{subject}/versions", {"schema": schema}).status_code == 200
    assert http.put(f"/config/{subject}", json={"compatibility": case.level}).status_code == 200

    verdict = post(http, f"/compatibility/subjects/{subject}/versions?verbose=true", {"schema": case.candidate})
    assert verdict.json()["is_compatible"] is case.compatible, verdict.json()

    registered = post(http, f"/subjects/{subject}/versions", {"schema": case.candidate})
    if case.compatible:
        assert registered.status_code == 200, registered.text
    else:
        assert (registered.status_code, registered.json()["error_code"]) == (409, 409)
        assert "incompatible" in registered.json()["message"]
