"""eddy.runtime.tracing: trace context in and out of record headers, a span per batch linked to its records' spans,
and nothing at all when tracing is off."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
from eddy.core.envconfig import SettingsError
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.runtime import tracing
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.handlers import ValidateBatch
from eddy.testing import InMemoryTopics
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, TraceFlags

from tests.records import demo_contract, event

DEMO = StreamTopics("demo")
# A W3C example context: trace 4bf9..., parent span 00f0..., sampled.
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Message:
    """What the tracer reads of a consumed record."""

    _headers: list[tuple[str, bytes]] | None
    _offset: int = 0
    _key: bytes | None = b"e1"
    _topic: str = DEMO.events

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


def tracer() -> tracing.Tracer:
    made = tracing.tracer_for("validation", [DEMO.events])
    assert made is not None
    return made


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_batch_spans_headers_round_trip_into_the_next_batchs_link(spans: InMemorySpanExporter) -> None:
    first = tracer().batch([])
    first.end(3)
    (header,) = first.headers
    assert header[0] == "traceparent" and header[1].startswith(b"00-")
    second = tracer().batch([Message(first.stamp(None), _offset=7)])
    second.end()
    upstream, downstream = spans.get_finished_spans()
    (link,) = downstream.links
    assert link.context.trace_id == upstream.context.trace_id
    assert link.context.span_id == upstream.context.span_id
    assert link.context.trace_flags == upstream.context.trace_flags and link.context.is_remote
    assert link.context.trace_flags & TraceFlags.SAMPLED
    assert dict(link.attributes or {}) == {
        "messaging.destination.name": DEMO.events,
        "messaging.destination.partition.id": "0",
        "messaging.batch.message_count": 1,
        "eddy.record_keys": ("e1",),
        "eddy.record_offsets": (7,),
    }
    assert upstream.attributes is not None and upstream.attributes["eddy.records_out"] == 3
    assert downstream.kind == SpanKind.CONSUMER and downstream.name == "validation process"
    assert downstream.attributes is not None and downstream.attributes["messaging.batch.message_count"] == 1


def test_every_record_that_carried_a_valid_traceparent_is_named_on_the_link_to_its_span(
    spans: InMemorySpanExporter,
) -> None:
    context = [("traceparent", INCOMING.encode())]
    other = [("traceparent", f"00-{'1' * 32}-{'2' * 16}-01".encode())]
    messages = [
        Message(context, 0, b"e0"),
        Message(None, 1),  # no headers
        Message([("x-other", b"1")], 2),  # headers but no context
        Message([("traceparent", b"00-garbage")], 3),  # not a W3C context: no link, no error
        Message(other, 4, b"e4"),
        Message(context, 5, None),
        Message(context, 6, b"e6", _topic=DEMO.feedback),
        Message([*context, ("tracestate", b"vendor=1")], 7, b"e7"),
    ]
    tracer().batch(messages).end()
    (span,) = spans.get_finished_spans()
    named = [
        (link.context.span_id, link.attributes["messaging.destination.name"], link.attributes["eddy.record_keys"])
        for link in span.links
        if link.attributes
    ]
    # One link per upstream span and partition (and tracestate): records of one upstream batch share it.
    assert named == [
        (0x00F067AA0BA902B7, DEMO.events, ("e0", "")),
        (0x2222222222222222, DEMO.events, ("e4",)),
        (0x00F067AA0BA902B7, DEMO.feedback, ("e6",)),
        (0x00F067AA0BA902B7, DEMO.events, ("e7",)),
    ]
    assert [link.attributes["eddy.record_offsets"] for link in span.links if link.attributes] == [
        (0, 5),
        (4,),
        (6,),
        (7,),
    ]
    assert span.links[3].context.trace_state.get("vendor") == "1"
    assert all(link.context.is_remote for link in span.links)


def test_stamp_replaces_the_trace_context_and_leaves_the_input_headers_alone(spans: InMemorySpanExporter) -> None:
    span = tracer().batch([])
    mine = dict(span.headers)
    theirs = [("ingested_at", b"1"), ("traceparent", INCOMING.encode()), ("tracestate", b"old=1")]
    stamped = span.stamp(theirs)
    assert stamped == [("ingested_at", b"1"), *span.headers]
    assert dict(stamped)["traceparent"] == mine["traceparent"]
    assert theirs[1] == ("traceparent", INCOMING.encode())  # the record's own list is not touched
    assert span.stamp(None) == span.headers and span.stamp(None) is not span.headers
    span.end()


def test_a_request_continues_the_callers_trace_or_starts_one(spans: InMemorySpanExporter) -> None:
    tracer().request({"traceparent": INCOMING}, "POST events", {"eddy.stream": "demo"}).end()
    tracer().request({}, "POST feedback", {}).end(error="HTTP 503")
    named = by_name(spans)
    child, root = named["POST events"], named["POST feedback"]
    assert child.parent is not None and child.parent.span_id == 0x00F067AA0BA902B7
    assert child.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736 and child.kind == SpanKind.SERVER
    assert root.parent is None and root.status.description == "HTTP 503"


def test_the_stream_loop_stamps_its_outputs_with_its_batch_span(spans: InMemorySpanExporter) -> None:
    contracts = {"demo": demo_contract()}
    topics = InMemoryTopics(contracts)
    serde = topics.serdes.for_topic(DEMO.events)
    topics.append(DEMO.events, serde.encode(event(1)), b"e1", [("traceparent", INCOMING.encode())], 1)
    topics.append(DEMO.events, serde.encode(event(2, x0=99.0)), b"e2", [("traceparent", INCOMING.encode())], 2)
    topics.run("validation", [DEMO.events], ValidateBatch(contracts, ValidationConfig(fast_lane=False)))
    (span,) = spans.get_finished_spans()
    (link,) = span.links
    assert link.context.span_id == 0x00F067AA0BA902B7
    assert link.attributes is not None and link.attributes["eddy.record_keys"] == ("e1", "e2")
    (passed,) = topics.log(DEMO.validated)
    assert dict(passed.headers() or [])["traceparent"] == dict(tracing_headers(span))["traceparent"]
    # A dead letter keeps the headers its record came with: its cause is the upstream span, not this batch.
    (dead,) = topics.log(DEMO.dlq)
    assert dict(dead.headers() or [])["traceparent"] == INCOMING.encode()


def tracing_headers(span: ReadableSpan) -> list[tuple[str, bytes]]:
    context = span.context
    return [("traceparent", f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode())]


def test_off_the_loop_has_no_tracer_and_writes_headers_as_they_came() -> None:
    assert tracing.tracer_for("validation") is None
    contracts = {"demo": demo_contract()}
    topics = InMemoryTopics(contracts)
    serde = topics.serdes.for_topic(DEMO.events)
    topics.append(DEMO.events, serde.encode(event(1)), b"e1", [("traceparent", INCOMING.encode())], 1)
    topics.run("validation", [DEMO.events], ValidateBatch(contracts, ValidationConfig(fast_lane=False)))
    (passed,) = topics.log(DEMO.validated)
    assert passed.headers() == [("traceparent", INCOMING.encode())]


def test_off_by_default_and_on_when_asked_through_eddy_or_opentelemetry_variables() -> None:
    assert tracing.exporters_wanted(Settings.from_env({}).tracing, {}) == ()
    assert tracing.exporters_wanted("auto", {"OTEL_TRACES_EXPORTER": "none"}) == ()
    assert tracing.exporters_wanted("auto", {"OTEL_TRACES_EXPORTER": " OTLP "}) == ("otlp",)
    assert tracing.exporters_wanted("otlp", {}) == ("otlp",)
    with pytest.raises(SettingsError, match="EDDY_TRACING"):
        Settings.from_env({"EDDY_TRACING": "jaeger"})
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER=jaeger"):
        tracing.exporters_wanted("auto", {"OTEL_TRACES_EXPORTER": "jaeger"})
    assert tracing.configure("validation", Settings.from_env({}), {}) is False
    assert tracing.tracer_for("validation") is None


def test_configure_installs_a_provider_named_after_the_service_with_room_for_a_batchs_links() -> None:
    try:
        assert tracing.configure("inference", Settings.from_env({"EDDY_TRACING": "console"}), {}) is True
        made = tracing.tracer_for("inference")
        assert made is not None
        provider = tracing._provider
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "eddy-inference"
        assert provider._span_limits.max_links == tracing.DEFAULT_MAX_LINKS
        env = {"OTEL_SERVICE_NAME": "shop", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SPAN_LINK_COUNT_LIMIT": "64"}
        assert tracing.configure("inference", Settings.from_env({}), env) is True
        assert isinstance(tracing._provider, TracerProvider)
        assert tracing._provider.resource.attributes["service.name"] == "shop"
    finally:
        for installed in [tracing._provider]:
            if installed is not None:
                installed.shutdown()  # type: ignore[no-untyped-call]
        tracing.uninstall()


def test_configured_without_the_sdk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(tracing.TracingUnavailable, match=r"eddy\[otel\]"):
        tracing.configure("validation", Settings.from_env({"EDDY_TRACING": "otlp"}), {})
    assert tracing.tracer_for("validation") is None
