"""An unexpected exception becomes a logged 500/50001 JSON answer, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from eddy.services.schema_registry.app import create_app
from eddy.services.schema_registry.journal import Journal
from eddy.services.schema_registry.service import RegistryService
from eddy.services.schema_registry.store import Store

pytestmark = pytest.mark.timeout(30)


class BrokenStore(Store):
    def schema_body_by_id(self, schema_id: int) -> bytes | None:
        raise RuntimeError("boom")


def test_unexpected_exception_is_a_json_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[int, object, int]:
        journal = Journal(tmp_path)
        journal.open()
        try:
            app = create_app(RegistryService(BrokenStore(), journal))
            async with TestClient(TestServer(app)) as client:
                broken = await client.get("/schemas/ids/1")
                body = await broken.json(content_type=None)
                healthy = await client.get("/")
                return broken.status, body, healthy.status
        finally:
            journal.close()

    status, body, healthy = asyncio.run(scenario())
    assert status == 500
    assert body == {"error_code": 50001, "message": "Internal Server Error"}
    assert healthy == 200
    assert "boom" in caplog.text


def test_journal_failure_is_a_50001_and_state_is_unchanged(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, object, int]:
        journal = Journal(tmp_path)
        journal.open()
        journal.close()  # appends now fail
        store = Store()
        app = create_app(RegistryService(store, journal))
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/subjects/s/versions", json={"schema": '"int"'})
            body = await response.json(content_type=None)
            listed = await client.get("/subjects")
            return response.status, body, len(await listed.json(content_type=None))

    status, body, subjects = asyncio.run(scenario())
    assert status == 500
    assert isinstance(body, dict) and body["error_code"] == 50001
    assert subjects == 0
