"""The lookup fast lane: ``GET /schemas/ids/{id}`` answered without going through aiohttp.

Serializers and deserializers look schemas up by id far more often than anything
else, and on a small machine aiohttp's per-request overhead (~150 µs) alone
caps a single keep-alive connection below 4,000 lookups/s. This protocol sits in
front of aiohttp on the same port:

- each complete request head that is a plain HTTP/1.1 keep-alive
  ``GET /schemas/ids/<n>`` with no body, for an id the store serves, is answered
  at once with the pre-encoded body the aiohttp route would send;
- at the first request of any other kind (another path, a body, a query string,
  an unknown id, ``Connection: close``, HTTP/1.0), the connection is handed to
  aiohttp for good, with every byte not yet answered, so responses keep their
  order and every other behaviour (errors, limits, routes) is aiohttp's own.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from .http_io import CONTENT_TYPE
from .metrics import RegistryMetrics
from .store import Store

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 16 * 1024
_REQUEST_LINE = re.compile(rb"GET /schemas/ids/([1-9][0-9]{0,9}) HTTP/1\.1\r\n")
_ROUTE = "/schemas/ids/{id}"


class FastLane(asyncio.Protocol):
    """One client connection: served here while requests are id lookups, then by aiohttp."""

    def __init__(self, store: Store, metrics: RegistryMetrics, aiohttp_factory: Callable[[], Any]) -> None:
        self._store = store
        self._aiohttp_factory = aiohttp_factory
        self._requests = metrics.requests.labels("GET", _ROUTE, "200")
        self._latency = metrics.latency.labels("GET", _ROUTE)
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._delegate: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.data_received(data)
            return
        self._buffer += data
        while True:
            end = self._buffer.find(_HEAD_END)
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    self._hand_over()
                return
            started = time.perf_counter()
            head = self._buffer[: end + 4]
            body = self._answer(head)
            if body is None:
                self._hand_over()
                return
            self._buffer = self._buffer[end + 4 :]
            assert self._transport is not None
            self._transport.write(_response(body))
            self._requests.inc()
            self._latency.observe(time.perf_counter() - started)

    def _answer(self, head: bytes) -> bytes | None:
        match = _REQUEST_LINE.match(head)
        if match is None:
            return None
        lowered = head.lower()
        # Anything that may carry a body or end the connection is aiohttp's to handle.
        if (
            b"\r\ncontent-length:" in lowered
            or b"\r\ntransfer-encoding:" in lowered
            or b"\r\nconnection: close" in lowered
        ):
            return None
        return self._store.schema_body_by_id(int(match.group(1)))

    def _hand_over(self) -> None:
        delegate = self._aiohttp_factory()
        self._delegate = delegate
        assert self._transport is not None
        self._transport.set_protocol(delegate)
        delegate.connection_made(self._transport)
        pending, self._buffer = self._buffer, b""
        if pending:
            delegate.data_received(pending)

    def eof_received(self) -> bool | None:
        if self._delegate is not None:
            return self._delegate.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._delegate is not None:
            self._delegate.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.pause_writing()

    def resume_writing(self) -> None:
        if self._delegate is not None:
            self._delegate.resume_writing()


_date_cache: tuple[int, bytes] = (0, b"")


def _response(body: bytes) -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n\r\n"
        % (CONTENT_TYPE.encode(), len(body), _date_cache[1])
        + body
    )


class FastLaneServer:
    """Listens on ``host:port`` with :class:`FastLane` in front of an aiohttp ``AppRunner``'s server."""

    def __init__(self, store: Store, metrics: RegistryMetrics, aiohttp_factory: Callable[[], Any]) -> None:
        self._store = store
        self._metrics = metrics
        self._aiohttp_factory = aiohttp_factory
        self._connections: set[_TrackedLane] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> _TrackedLane:
        lane = _TrackedLane(self._store, self._metrics, self._aiohttp_factory, self._connections)
        return lane

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port."""
        self._server = await asyncio.get_running_loop().create_server(self._protocol, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting and close the connections still served only by the fast lane."""
        if self._server is not None:
            self._server.close()
        for lane in list(self._connections):
            lane.close_if_idle()
        if self._server is not None:
            await self._server.wait_closed()


class _TrackedLane(FastLane):
    def __init__(
        self, store: Store, metrics: RegistryMetrics, factory: Callable[[], Any], registry: set[_TrackedLane]
    ) -> None:
        super().__init__(store, metrics, factory)
        self._registry = registry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._registry.add(self)

    def _hand_over(self) -> None:
        self._registry.discard(self)  # aiohttp tracks (and gracefully closes) it from here on
        super()._hand_over()

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)

    def close_if_idle(self) -> None:
        # Every complete request has been answered synchronously, so the connection is idle.
        if self._transport is not None and self._delegate is None:
            self._transport.close()
