"""One event's trace, end to end (issue 24): ingestion → validation → inference → learning → its labeled example.

The real HTTP gateway takes the event and its label (the event's request carries a caller's ``traceparent``), and
the real stream loops and handlers of validation, inference and learning run over the in-memory topics of
``eddy.testing``; spans go to the SDK's in-memory exporter. Going back from the labeled example's header, each
hop is a link, named by its record's topic and key, from a batch span to the span that wrote the record.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.ml.models import ModelState
from eddy.runtime.observability import Health
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.ingestion.app import Gateway
from eddy.services.learning.handlers import Learner, LearnerState
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.fastlane import FastValidation
from eddy.services.validation.handlers import ValidateBatch
from eddy.testing import InMemoryTopics
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.records import demo_contract, event

DEMO = StreamTopics("demo")
CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
CALLER = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"


class TopicsProducer:
    """What the gateway uses of a confluent-kafka Producer, writing to in-memory topics, acknowledged at once."""

    def __init__(self, topics: InMemoryTopics) -> None:
        self.topics = topics

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        headers: list[tuple[str, Any]],
        timestamp: int,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        kept = [(name, v if isinstance(v, bytes) else str(v or "").encode()) for name, v in headers]
        self.topics.append(topic, value, key, kept, timestamp)
        on_delivery(None, None)

    def poll(self, timeout: float = 0.0) -> int:
        time.sleep(timeout)
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


async def ingest(gateway: Gateway) -> None:
    """The event (in a request that continues the caller's trace), another event, then the event's label."""
    async with TestClient(TestServer(gateway.app())) as client:
        sent = await client.post(
            "/v1/streams/demo/events", data=json.dumps([event(1), event(2)]), headers={"traceparent": CALLER}
        )
        assert sent.status == 200, await sent.text()
        labelled = await client.post("/v1/streams/demo/feedback", data=json.dumps({"event_id": "e1", "label": True}))
        assert labelled.status == 200, await labelled.text()


def run_pipeline(topics: InMemoryTopics, contracts: dict[str, StreamContract], fast_lane: bool) -> None:
    gateway = Gateway(contracts, topics.serdes, TopicsProducer(topics), Health("ingestion"))  # type: ignore[arg-type]
    asyncio.run(ingest(gateway))
    validate = ValidateBatch(contracts, ValidationConfig(fast_lane=fast_lane))
    lane = FastValidation(validate, {DEMO.events: topics.serdes.schema_id(DEMO.events)}) if fast_lane else None
    topics.run("validation", [DEMO.events], validate, fast_lane=lane)
    topics.run("inference", [DEMO.validated], PredictBatch(contracts, fresh_models(contracts)))
    contract = contracts["demo"]
    learner = Learner(contract, LearnerState(ModelState.fresh("demo", contract.champion)))
    topics.run("learning", [DEMO.predictions, DEMO.feedback], learner)


def header(headers: list[tuple[str, bytes]] | None, name: str) -> str:
    found = [value.decode() for key, value in headers or [] if key == name]
    assert len(found) == 1, f"{name} in {headers}"
    return found[0]


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "python"])
def test_one_events_spans_link_up_from_ingestion_to_its_labeled_example(
    spans: InMemorySpanExporter, fast_lane: bool
) -> None:
    contracts = {"demo": demo_contract()}
    topics = InMemoryTopics(contracts)
    run_pipeline(topics, contracts, fast_lane)

    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}

    def upstream(span: ReadableSpan, topic: str, key: str) -> ReadableSpan:
        """The span that wrote ``key``'s record on ``topic``, through ``span``'s link to it, which names the record."""
        (link,) = [
            link
            for link in span.links
            if link.attributes
            and link.attributes["messaging.destination.name"] == topic
            and key in link.attributes["eddy.record_keys"]
        ]
        assert link.context.span_id in by_id, f"{span.name} links to a span that was not recorded"
        return by_id[link.context.span_id]

    (labeled,) = [m for m in topics.log(DEMO.labeled) if m.key() == b"e1"]
    traceparent = header(labeled.headers(), "traceparent")
    learning = by_id[int(traceparent.split("-")[2], 16)]
    assert learning.name == "learning process"
    inference = upstream(learning, DEMO.predictions, "e1")
    label_request = upstream(learning, DEMO.feedback, "e1")
    assert inference.name == "inference process" and label_request.name == "POST feedback"
    validation = upstream(inference, DEMO.validated, "e1")
    assert validation.name == "validation process"
    ingestion = upstream(validation, DEMO.events, "e1")
    assert ingestion.name == "POST events"
    # The event's request continued the caller's trace; the label's started one of its own.
    assert ingestion.parent is not None and ingestion.parent.span_id == CALLER_SPAN
    assert ingestion.context.trace_id == CALLER_TRACE
    assert label_request.parent is None and label_request.context.trace_id != CALLER_TRACE
    # Each record written carries the span of the batch (or request) that wrote it, in place of what it came with.
    (validated,) = [m for m in topics.log(DEMO.validated) if m.key() == b"e1"]
    assert header(validated.headers(), "traceparent").split("-")[2] == f"{validation.context.span_id:016x}"
    # Both events of the request share its span: e2 links the same validation batch to the same request.
    assert upstream(validation, DEMO.events, "e2") is ingestion
    assert {span.name for span in finished} == {
        "POST events",
        "POST feedback",
        "validation process",
        "inference process",
        "learning process",
    }
