"""The HTTP API: ``POST /v1/streams/{stream}/events`` and ``.../feedback``.

A request is answered only after the broker acknowledged every accepted record,
so a 200 means durably in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.ingestion import metrics
from services.ingestion.handlers import BodyError, convert, parse_body
from shared.ingest import INGESTED_AT_HEADER, now_ms
from shared.observability import Health
from shared.serde import SerdeError, SerdeRegistry
from shared.topics import StreamTopics

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
MAX_BODY_BYTES = 16 * 1024 * 1024


class Gateway:
    def __init__(self, contracts: dict, serdes: SerdeRegistry, producer: Producer, health: Health) -> None:
        self.contracts = contracts
        self.serdes = serdes
        self.producer = producer
        self.health = health
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="delivery", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors])
        app.router.add_post("/v1/streams/{stream}/events", self.events)
        app.router.add_post("/v1/streams/{stream}/feedback", self.feedback)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
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

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response(self.health.snapshot())

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def events(self, request: web.Request) -> web.Response:
        return await self._ingest(request, "events")

    async def feedback(self, request: web.Request) -> web.Response:
        return await self._ingest(request, "feedback")

    async def _ingest(self, request: web.Request, kind: str) -> web.Response:
        started = time.perf_counter()
        stream = request.match_info["stream"]
        contract = self.contracts.get(stream)
        if contract is None:
            return error(404, f"unknown stream {stream!r}; known: {', '.join(sorted(self.contracts))}")
        try:
            records = parse_body(await request.read())
        except BodyError as exc:
            return error(400, str(exc))
        if len(records) > MAX_BATCH:
            return error(413, f"{len(records)} records in one request; the limit is {MAX_BATCH}")
        received = now_ms()
        converted = convert(records, contract, kind, received)
        topic = getattr(StreamTopics(stream), kind)
        serde = self.serdes.for_topic(topic)
        rejected = dict(converted.rejected)
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for index, value in converted.accepted:
            try:
                data = serde.encode(value)
            except SerdeError as exc:
                rejected[index] = str(exc)
                continue
            future: asyncio.Future[None] = loop.create_future()
            key = value["event_id"] if kind == "feedback" else value[contract.id_field]
            timestamp = value["label_time_ms"] if kind == "feedback" else value[contract.time_field]
            try:
                self.producer.produce(
                    topic,
                    data,
                    key.encode(),
                    headers=[(INGESTED_AT_HEADER, str(received).encode())],
                    timestamp=timestamp,
                    on_delivery=_resolver(loop, future),
                )
            except BufferError:
                return error(429, "the producer queue is full; retry shortly", headers={"Retry-After": "1"})
            futures.append(future)
        try:
            await asyncio.gather(*futures)
        except KafkaDeliveryError as exc:
            return error(503, f"Kafka did not acknowledge the records: {exc}")
        results = _results(
            len(records), converted.accepted, rejected, contract.id_field if kind == "events" else "event_id"
        )
        accepted = len(records) - len(rejected)
        metrics.RECORDS.labels(stream, kind, "accepted").inc(accepted)
        metrics.RECORDS.labels(stream, kind, "rejected").inc(len(rejected))
        metrics.REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
        status = 200 if not rejected else (422 if accepted == 0 else 207)
        return web.json_response({"accepted": accepted, "rejected": len(rejected), "results": results}, status=status)


class KafkaDeliveryError(RuntimeError):
    pass


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
    count: int, accepted: list[tuple[int, dict[str, Any]]], rejected: dict[int, str], id_field: str
) -> list[dict[str, Any]]:
    ids = {i: v[id_field] for i, v in accepted}
    out = []
    for index in range(count):
        if index in rejected:
            out.append({"index": index, "status": "rejected", "error": rejected[index]})
        else:
            out.append({"index": index, "status": "accepted", "event_id": ids[index]})
    return out


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is JSON with a message, including aiohttp's own (404, 413) and crashes (500)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason if exc.status != 413 else f"body larger than {MAX_BODY_BYTES} bytes")
    except Exception:
        log.exception("request failed")
        return error(500, "internal error; see the ingestion log")
