"""eddy.runtime.server: the HTTP server beside a stream loop, and what it promises about threads.

The stream loop blocks its service's main thread; the server runs in a daemon thread with its own event
loop, so neither waits for the other, and a route whose work blocks runs it in that loop's thread pool,
so ``/healthz`` still answers meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from aiohttp import web
from eddy.runtime.auth import ApiKeys
from eddy.runtime.observability import Health
from eddy.runtime.server import HttpApi, HttpServer, serve_http

RESPONSES = {"200": {"description": "done"}}


class Slow:
    """A route whose work blocks until released, like the registry's SQLite and Kafka acknowledgements."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.threads: list[str] = []

    def work(self) -> str:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        self.release.wait(10)
        return "done"

    async def handle(self, _request: web.Request) -> web.Response:
        self.threads.append(threading.current_thread().name)
        return web.json_response({"result": await asyncio.to_thread(self.work)})

    def api(self) -> HttpApi:
        return HttpApi("slow", [web.get("/api/slow", self.handle)], {"/api/slow": {"get": {"responses": RESPONSES}}})


@pytest.fixture
def slow() -> Iterator[tuple[Slow, HttpServer]]:
    route = Slow()
    server = serve_http("127.0.0.1", 0, Health("t"), route.api(), ApiKeys())
    yield route, server
    route.release.set()
    server.stop(10)


def test_serve_http_returns_at_once_and_serves_from_another_thread(slow: tuple[Slow, HttpServer]) -> None:
    route, server = slow
    route.release.set()
    assert httpx.get(f"{server.url}/api/slow", timeout=5).json() == {"result": "done"}
    caller = threading.current_thread().name
    assert route.threads and caller not in route.threads
    assert route.threads[0] == "http"  # the handler, on the server's own event loop thread


def test_a_blocked_route_holds_up_neither_healthz_nor_the_caller(slow: tuple[Slow, HttpServer]) -> None:
    route, server = slow
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, f"{server.url}/api/slow", timeout=10)
        assert route.started.wait(5)
        started = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 200
        assert time.monotonic() - started < 2, "/healthz waited for the blocked route"
        assert not pending.done()
        route.release.set()
        assert pending.result(10).json() == {"result": "done"}
    # The work ran in the event loop's thread pool, not on the loop's own thread.
    assert route.threads[1] != route.threads[0]


def test_a_taken_port_is_a_clear_error(slow: tuple[Slow, HttpServer]) -> None:
    _, server = slow
    with pytest.raises(RuntimeError, match="did not start"):
        serve_http("127.0.0.1", server.port, Health("t"))


def test_stop_closes_the_port() -> None:
    server = serve_http("127.0.0.1", 0, Health("t"))
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    server.stop(10)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=1)
