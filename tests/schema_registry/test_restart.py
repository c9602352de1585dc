"""Everything survives SIGKILL; ids are never reused after a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from .conftest import start_registry

pytestmark = pytest.mark.timeout(90)

JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def schema(*fields: str) -> str:
    return json.dumps(
        {"type": "record", "name": "R", "fields": [{"name": f, "type": "long", "default": 0} for f in fields]}
    )


def snapshot(client: httpx.Client) -> dict[str, object]:
    subjects: list[str] = client.get("/subjects", params={"deleted": "true"}).json()
    state: dict[str, object] = {"subjects": subjects}
    for subject in subjects:
        versions = client.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json()
        state[subject] = [
            client.get(f"/subjects/{subject}/versions/{v}", params={"deleted": "true"}).json() for v in versions
        ]
        state[f"config:{subject}"] = client.get(f"/config/{subject}").json()
    state["global"] = client.get("/config").json()
    state["ids"] = {i: client.get(f"/schemas/ids/{i}").json() for i in range(1, 8)}
    return state


def test_state_survives_sigkill_and_ids_are_not_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_registry(data)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        ids = []
        for subject, fields in [("a", ("x",)), ("a", ("x", "y")), ("b", ("x",)), ("c", ("z",)), ("d", ("w",))]:
            response = client.post(
                f"/subjects/{subject}/versions", content=json.dumps({"schema": schema(*fields)}), headers=JSON
            )
            assert response.status_code == 200
            ids.append(response.json()["id"])
        assert client.put("/config/a", json={"compatibility": "FULL"}).status_code == 200
        assert client.put("/config", json={"compatibility": "FORWARD"}).status_code == 200
        assert client.put("/config/c", json={"compatibility": "NONE"}).status_code == 200
        # c is deleted for good: its id (only used by c) must never come back.
        assert client.delete("/subjects/c").status_code == 200
        assert client.delete("/subjects/c", params={"permanent": "true"}).status_code == 200
        assert client.delete("/subjects/d/versions/1").status_code == 200
        before = snapshot(client)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = start_registry(data)
    try:
        with httpx.Client(base_url=second.url, timeout=10) as client:
            assert snapshot(client) == before
            assert client.get(f"/schemas/ids/{ids[3]}").json()["error_code"] == 40403
            fresh = client.post("/subjects/e/versions", content=json.dumps({"schema": schema("new")}), headers=JSON)
            assert fresh.status_code == 200
            assert fresh.json()["id"] == max(ids) + 1
            assert fresh.json()["id"] not in ids
    finally:
        assert second.stop() == 0


def test_torn_journal_tail_is_tolerated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_registry(data)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        assert (
            client.post("/subjects/t/versions", content=json.dumps({"schema": schema("x")}), headers=JSON).status_code
            == 200
        )
    first.stop(signal.SIGKILL)
    with (data / "journal.jsonl").open("ab") as journal:
        journal.write(b'{"ts":1,"ops":[{"op":"schema","id":2,"sch')
    second = start_registry(data)
    try:
        with httpx.Client(base_url=second.url, timeout=10) as client:
            assert client.get("/subjects/t/versions").json() == [1]
            response = client.post(
                "/subjects/t/versions", content=json.dumps({"schema": schema("x", "y")}), headers=JSON
            )
            assert response.json() == {"id": 2, "version": 2}
    finally:
        second.stop()
    third = start_registry(data)
    try:
        with httpx.Client(base_url=third.url, timeout=10) as client:
            assert client.get("/subjects/t/versions").json() == [1, 2]
    finally:
        third.stop()
