"""Synchronous predictions over HTTP: ``POST /v1/streams/{stream}/predict``.

The body is one record (a JSON object), a JSON array of records, or JSON lines. Each record goes the way
an event goes through the platform, in one request: converted like ingestion does it (``to_event``: a
missing event id gets a UUID, a missing event time the time of receipt), checked against the contract
like validation does it (``check_record``), and predicted by the model the streaming path is serving
(``PredictBatch``). Each prediction is also logged to ``S.predictions``, with source partition and offset
-1, and the answer is sent only once Kafka acknowledged them: a label sent later to ``S.feedback`` joins
an HTTP prediction like any other.

Answers: 200 when every record was predicted, 207 when some were rejected, 422 when all were (each
rejected record with its reasons: field, rule, value, message); 400 for a body that is not JSON, 404 for
an unknown stream, 413 for too many records or too large a body, 401/403 without a key allowed to
produce when ``EDDY_API_KEYS`` is set, 503 when Kafka did not acknowledge the predictions. The API
describes itself at ``GET /openapi.json`` (``openapi.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from eddy.avro.serde import SerdeRegistry, encode_key
from eddy.contracts.checks import check_record
from eddy.contracts.records import INGESTED_AT_HEADER, RecordError, now_ms, to_event
from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.kafka.client import producer_config
from eddy.kafka.producer import ConfirmedProducer, DeliveryError
from eddy.runtime.auth import ApiKeys
from eddy.runtime.http import error, json_errors, stream_batch
from eddy.runtime.loop import InRecord
from eddy.runtime.server import HttpServer
from eddy.runtime.service import ServiceContext
from eddy.services.inference.config import InferenceConfig
from eddy.services.inference.handlers import PredictBatch
from eddy.services.inference.openapi import openapi

log = logging.getLogger(__name__)

# What a caller gets back of each prediction; the rest of the Prediction record is for the platform.
ANSWER_FIELDS = ("event_id", "prediction", "probabilities", "model_name", "model_version", "model_learned")
# The source coordinates of a prediction made for an HTTP request: it has no input record in Kafka.
NO_SOURCE = -1


@dataclass
class Checked:
    """The records of a request that are valid events, and the reasons of the others, by request index."""

    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def checked_events(records: list[Any], contract: StreamContract, received_ms: int, pii_key: bytes = b"") -> Checked:
    """Each record as a valid event of ``contract``, or why it is not one.

    A record that does not convert to the event schema gets one reason with rule ``schema`` (and no
    field: the conversion error names it in the message); a converted record that breaks the contract
    gets one reason per violation, exactly as validation would dead-letter it.

    Examples
    --------
    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    >>> checked = checked_events([{"x0": 1, "x1": 2, "x2": 3}, {"x0": 11, "x1": 2, "x2": 3}, {"x0": "high"}], demo, 1)
    >>> [(i, e["event_time_ms"]) for i, e in checked.valid]
    [(0, 1)]
    >>> {i: [r["rule"] for r in reasons] for i, reasons in checked.rejected.items()}
    {1: ['max'], 2: ['schema']}
    """
    out = Checked()
    for index, record in enumerate(records):
        try:
            event = to_event(record, contract, received_ms, pii_key)
        except RecordError as exc:
            out.rejected[index] = [{"field": None, "rule": "schema", "value": None, "message": str(exc)}]
            continue
        not_text = _not_text(event)
        if not_text is not None:
            # Avro (S.predictions) takes only UTF-8: such a record could be predicted but never logged.
            message = f"field {not_text!r} holds a lone UTF-16 surrogate (like \\ud800), which is not text"
            out.rejected[index] = [{"field": not_text, "rule": "schema", "value": None, "message": message}]
            continue
        violations = check_record(event, contract)
        if violations:
            out.rejected[index] = [v.as_dict() for v in violations]
        else:
            out.valid.append((index, event))
    return out


def _not_text(value: Any, name: str = "") -> str | None:
    """The name of the first field of ``value`` whose text (or key) is not UTF-8 encodable; None when all are.

    >>> _not_text({"event_id": "e1", "tags": {"a": "\\ud800"}}), _not_text({"x0": 1.0, "region": "north"})
    ('tags', None)
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return name
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            field = name or str(key)
            if _not_text(key, field) is not None or _not_text(item, field) is not None:
                return field
    if isinstance(value, list):
        for item in value:
            if _not_text(item, name) is not None:
                return name
    return None


def results(count: int, predictions: Mapping[int, dict[str, Any]], checked: Checked) -> list[dict[str, Any]]:
    """One result per request record, in request order: its prediction, or the reasons it was rejected."""
    out: list[dict[str, Any]] = []
    for index in range(count):
        if index in checked.rejected:
            out.append({"index": index, "status": "rejected", "reasons": checked.rejected[index]})
        else:
            answer = {name: predictions[index][name] for name in ANSWER_FIELDS}
            out.append({"index": index, "status": "predicted", **answer})
    return out


class PredictApi:
    """The aiohttp application and what it needs: the model, the registry, a producer of its own.

    The producer is not the stream loop's: ``ConfirmedProducer`` tracks deliveries for one thread. It is
    used from one worker thread only, which also runs the model, so the event loop never blocks on either;
    requests take turns there, each awaiting its own acknowledgements. Send batches for throughput.
    """

    def __init__(
        self,
        contracts: dict[str, StreamContract],
        serdes: SerdeRegistry,
        predict: PredictBatch,
        producer: ConfirmedProducer,
        config: InferenceConfig | None = None,
        keys: ApiKeys | None = None,
        pii_key: bytes = b"",
    ) -> None:
        self.contracts = contracts
        self.serdes = serdes
        self.predict_batch = predict
        self.producer = producer
        self.config = config or InferenceConfig()
        self.keys = keys or ApiKeys()
        self.pii_key = pii_key
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-kafka")
        self._openapi = openapi(contracts)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.http_max_body_bytes, middlewares=[json_errors])
        app.router.add_post("/v1/streams/{stream}/predict", self.predict)
        app.router.add_get("/openapi.json", self.openapi)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _app: web.Application) -> None:
        self._worker.shutdown(wait=True)
        try:
            self.producer.confirm(10)
        except DeliveryError:
            log.exception("predictions still unacknowledged at shutdown")

    async def openapi(self, _request: web.Request) -> web.Response:
        """``GET /openapi.json``: the API's OpenAPI document (``openapi.py``)."""
        return web.json_response(self._openapi)

    async def predict(self, request: web.Request) -> web.Response:
        """``POST /v1/streams/{stream}/predict``: answers once the predictions are in Kafka."""
        batch = await stream_batch(
            request, self.contracts, self.keys, "request predictions", self.config.http_max_batch
        )
        if isinstance(batch, web.Response):
            return batch
        contract, records = batch
        received = now_ms()
        checked = checked_events(records, contract, received, self.pii_key)
        try:
            predicted = await asyncio.get_running_loop().run_in_executor(
                self._worker, self._predict_and_log, contract, [event for _, event in checked.valid], received
            )
        except DeliveryError as exc:
            return error(503, f"Kafka did not acknowledge the predictions: {exc}")
        except Exception:
            log.exception("prediction failed")
            return error(500, "internal error; see the inference log")
        by_index = {index: value for (index, _), value in zip(checked.valid, predicted, strict=True)}
        status = 200 if not checked.rejected else (422 if not by_index else 207)
        body = {
            "predicted": len(by_index),
            "rejected": len(checked.rejected),
            "results": results(len(records), by_index, checked),
        }
        return web.json_response(body, status=status)

    def _predict_and_log(
        self, contract: StreamContract, events: list[dict[str, Any]], received_ms: int
    ) -> list[dict[str, Any]]:
        """Predict ``events``, produce the predictions and wait for Kafka's acknowledgement; in the worker."""
        if not events:
            return []
        topic = StreamTopics(contract.name).validated
        headers = [(INGESTED_AT_HEADER, str(received_ms).encode())]
        inputs = [
            InRecord(topic, NO_SOURCE, NO_SOURCE, e[contract.id_field], e, e[contract.time_field], headers)
            for e in events
        ]
        outputs = self.predict_batch(inputs).outputs
        # Everything is encoded before anything is sent: a record that cannot be encoded sends nothing.
        encoded = [(out, self.serdes.for_topic(out.topic).encode(out.value)) for out in outputs]
        delivery = self.producer.track()
        for out, data in encoded:
            self.producer.produce(out.topic, data, encode_key(out.key), out.headers, out.timestamp_ms)
        self.producer.wait(delivery)
        # One served prediction per event (the champion's, or the challenger's on the canary share) is the answer.
        served = {out.value["event_id"]: out.value for out in outputs if out.value["served"]}
        return [served[event[contract.id_field]] for event in events]


# The server thread of the prediction API is the one every eddy server uses; the old name stays for callers.
ServerThread = HttpServer


def start_predict_api(ctx: ServiceContext, predict: PredictBatch, config: InferenceConfig) -> HttpServer:
    """Serve the prediction API for ``ctx``'s streams and report its URL in the health as ``predict_url``."""
    producer = ConfirmedProducer(producer_config(ctx.settings))
    api = PredictApi(
        ctx.contracts, ctx.serdes, predict, producer, config, ApiKeys.from_env(), ctx.settings.pii_key.encode()
    )
    server = HttpServer(api.app(), ctx.settings.http_host, config.http_port, name="predict-http")
    url = server.start()
    ctx.health.set(predict_url=url)
    log.info("serving predictions", extra={"url": f"{url}/v1/streams/{{stream}}/predict"})
    return server
