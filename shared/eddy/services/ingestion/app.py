"""The HTTP API: ``POST /v1/streams/{stream}/events`` and ``.../feedback``; ``GET /openapi.json``,
``/healthz`` (``?ready=1`` for readiness) and ``/metrics`` as on every eddy server (eddy.runtime.http).

A request is answered only after the broker acknowledged every accepted record,
so a 200 means durably in Kafka. A request that would overfill the producer
queue is refused whole (429), so nothing of it is half-sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.contracts.records import INGESTED_AT_HEADER, now_ms
from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.runtime.auth import ApiKeys
from eddy.runtime.http import error, json_errors, ops_routes, stream_batch
from eddy.runtime.observability import Health
from eddy.runtime.tracing import TraceSpan, tracer_for
from eddy.services.ingestion import metrics
from eddy.services.ingestion.config import IngestionConfig
from eddy.services.ingestion.dedup import DedupWindow
from eddy.services.ingestion.handlers import convert
from eddy.services.ingestion.openapi import openapi

log = logging.getLogger(__name__)


class KafkaDeliveryError(RuntimeError):
    pass


class Gateway:
    def __init__(
        self,
        contracts: dict[str, StreamContract],
        serdes: SerdeRegistry,
        producer: Producer,
        health: Health,
        config: IngestionConfig | None = None,
        keys: ApiKeys | None = None,
        pii_key: bytes = b"",
    ) -> None:
        self.contracts = contracts
        self.serdes = serdes
        self.producer = producer
        self.health = health
        self.config = config or IngestionConfig()
        self.keys = keys or ApiKeys()
        self.pii_key = pii_key
        self.dedup = DedupWindow(self.config.dedup_window_s, self.config.dedup_max_ids)
        # Event ids being produced right now, with their acknowledgement: a concurrent request carrying one
        # of them (a client retrying while its first try is still in flight) waits for it instead of
        # producing the event a second time.
        self.in_flight: dict[str, asyncio.Future[None]] = {}
        self._openapi = openapi(contracts)
        # None unless tracing is on: then each request is a span, and its records carry its context.
        self.tracer = tracer_for("ingestion")
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="delivery", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[json_errors])
        app.router.add_post("/v1/streams/{stream}/events", self.events)
        app.router.add_post("/v1/streams/{stream}/feedback", self.feedback)
        app.add_routes(ops_routes(self.health, self._openapi))
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start(self, _app: web.Application) -> None:
        self._poller.start()
        self.health.set("ok")

    async def _cleanup(self, _app: web.Application) -> None:
        self._stop.set()
        self._poller.join(2)
        remaining = self.producer.flush(10)
        log.info("flushed", extra={"unacknowledged": remaining})

    async def events(self, request: web.Request) -> web.Response:
        return await self._ingest(request, "events")

    async def feedback(self, request: web.Request) -> web.Response:
        return await self._ingest(request, "feedback")

    async def _ingest(self, request: web.Request, kind: str) -> web.Response:
        started = time.perf_counter()
        batch = await stream_batch(request, self.contracts, self.keys, "send records", self.config.max_batch)
        if isinstance(batch, web.Response):
            return batch
        contract, records = batch
        stream = contract.name
        if len(self.producer) + len(records) > self.config.queue_max:
            metrics.RECORDS.labels(stream, kind, "throttled").inc(len(records))
            return error(429, "the producer queue is full; retry shortly", headers={"Retry-After": "1"})
        received = now_ms()
        converted = convert(records, contract, kind, received, self.pii_key)
        trace = None
        if self.tracer is not None:
            attributes = {
                "eddy.stream": stream,
                "http.route": f"/v1/streams/{{stream}}/{kind}",
                "eddy.records": len(records),
            }
            trace = self.tracer.request(request.headers, f"POST {kind}", attributes)
        outcome = await self._produce(contract, kind, converted.accepted, received, trace)
        if trace is not None:
            trace.end(error=f"HTTP {outcome.status}" if isinstance(outcome, web.Response) else None)
        if isinstance(outcome, web.Response):
            return outcome
        rejected, duplicates = outcome
        rejected.update(dict(converted.rejected))
        id_field = contract.id_field if kind == "events" else "event_id"
        results = _results(len(records), converted.accepted, rejected, duplicates, id_field)
        accepted = len(records) - len(rejected)
        metrics.RECORDS.labels(stream, kind, "accepted").inc(accepted - len(duplicates))
        metrics.RECORDS.labels(stream, kind, "duplicate").inc(len(duplicates))
        metrics.RECORDS.labels(stream, kind, "rejected").inc(len(rejected))
        metrics.REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
        status = 200 if not rejected else (422 if accepted == 0 else 207)
        body = {"accepted": accepted, "rejected": len(rejected), "duplicates": len(duplicates), "results": results}
        return web.json_response(body, status=status)

    async def _produce(
        self,
        contract: StreamContract,
        kind: str,
        accepted: list[tuple[int, dict[str, Any]]],
        received: int,
        trace: TraceSpan | None = None,
    ) -> tuple[dict[int, str], set[int]] | web.Response:
        """Produce the accepted records and await their acknowledgement; duplicates are not produced."""
        topic = getattr(StreamTopics(contract.name), kind)
        serde = self.serdes.for_topic(topic)
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        rejected: dict[int, str] = {}
        duplicates: set[int] = set()
        ids: list[str] = []
        in_request: set[str] = set()
        futures: list[asyncio.Future[None]] = []
        elsewhere: dict[int, asyncio.Future[None]] = {}  # produced by a concurrent request, not yet acknowledged
        header: list[tuple[str, str | bytes | None]] = [(INGESTED_AT_HEADER, str(received).encode())]
        if trace is not None:
            header.extend(trace.headers)
        try:
            for index, value in accepted:
                key = value["event_id"] if kind == "feedback" else value[contract.id_field]
                if kind == "events" and (key in in_request or self.dedup.seen(key, now)):
                    duplicates.add(index)
                    continue
                if kind == "events" and key in self.in_flight:
                    elsewhere[index] = self.in_flight[key]
                    in_request.add(key)
                    continue
                try:
                    data = serde.encode(value)
                except SerdeError as exc:
                    rejected[index] = str(exc)
                    continue
                timestamp = value["label_time_ms"] if kind == "feedback" else value[contract.time_field]
                future: asyncio.Future[None] = loop.create_future()
                try:
                    self.producer.produce(
                        topic,
                        data,
                        key.encode(),
                        headers=header,
                        timestamp=timestamp,
                        on_delivery=_resolver(loop, future),
                    )
                except BufferError:
                    # The capacity check above makes this rare (another request raced us); what was sent is
                    # acknowledged and remembered, so a retry does not produce it twice.
                    await asyncio.gather(*futures, return_exceptions=True)
                    self._remember(ids, futures)
                    return error(429, "the producer queue is full; retry shortly", headers={"Retry-After": "1"})
                except KafkaException as exc:
                    # The client refuses this record outright (over message.max.bytes, key and value together):
                    # it alone is rejected, the rest of the request goes on.
                    rejected[index] = f"Kafka refused the record: {exc.args[0].str() if exc.args else exc}"
                    continue
                futures.append(future)
                in_request.add(key)
                ids.append(key)
                if kind == "events":
                    self.in_flight[key] = future
            # Every acknowledgement is awaited, so what Kafka did take is remembered even when some failed.
            failures = [f for f in await asyncio.gather(*futures, return_exceptions=True) if f is not None]
            if kind == "events":
                self._remember(ids, futures)
            if failures:
                return error(503, f"Kafka did not acknowledge the records: {failures[0]}")
            outcomes = await asyncio.gather(*elsewhere.values(), return_exceptions=True)
            if any(isinstance(outcome, BaseException) for outcome in outcomes):
                return error(503, "Kafka did not acknowledge records a concurrent request sent with the same ids")
            duplicates.update(elsewhere)
            return rejected, duplicates
        finally:
            for key, future in zip(ids, futures, strict=True):
                if self.in_flight.get(key) is future:
                    del self.in_flight[key]

    def _remember(self, ids: list[str], futures: list[asyncio.Future[None]]) -> None:
        """Remember the ids whose records Kafka acknowledged."""
        acknowledged = [key for key, f in zip(ids, futures, strict=True) if f.done() and f.exception() is None]
        self.dedup.remember(acknowledged, time.monotonic())


def _resolver(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Any:
    def done(err: KafkaError | None, _msg: Message) -> None:
        def settle() -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaDeliveryError(err.str()))

        loop.call_soon_threadsafe(settle)

    return done


def _results(
    count: int,
    accepted: list[tuple[int, dict[str, Any]]],
    rejected: dict[int, str],
    duplicates: set[int],
    id_field: str,
) -> list[dict[str, Any]]:
    ids = {i: v[id_field] for i, v in accepted}
    out: list[dict[str, Any]] = []
    for index in range(count):
        if index in rejected:
            out.append({"index": index, "status": "rejected", "error": rejected[index]})
        elif index in duplicates:
            out.append({"index": index, "status": "duplicate", "event_id": ids[index]})
        else:
            out.append({"index": index, "status": "accepted", "event_id": ids[index]})
    return out
