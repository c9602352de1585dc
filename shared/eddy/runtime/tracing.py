"""OpenTelemetry traces across the Kafka hops: the W3C trace context rides in the record headers.

Each stage makes one span per batch (:meth:`Tracer.batch`), linked to the span of every input record that
carried a ``traceparent`` header (one link per upstream span and partition, naming its records by key and
offset: :func:`links_of`); the records the batch produces carry that span's context as their ``traceparent``
(:meth:`TraceSpan.stamp`). So one event is followed ingestion → validation batch → inference batch →
learning batch → its labeled example's header, each hop a link from a batch span to the span that wrote the
record. The HTTP ingestion path starts the trace, or continues the one of an incoming ``traceparent``
(:meth:`Tracer.request`).

Links rather than a parent per record: a batch is one unit of work with many causes, and a span has one
parent. The links name the records (topic, partition, offsets, keys), so a batch span says which of its
records came from which upstream span, and one event is followed by its key.

Tracing is off unless configured (:func:`configure`, called once per process by the service's bootstrap):
``EDDY_TRACING=otlp`` (or ``console``), or, with ``EDDY_TRACING=auto`` (the default), the standard
``OTEL_TRACES_EXPORTER``. The OTLP exporter reads its own standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, headers, timeout); ``OTEL_SERVICE_NAME`` names the service (default
``eddy-<service>``), ``OTEL_TRACES_SAMPLER`` samples. Off, :func:`tracer_for` answers None and the stream loop
checks that once per batch; nothing is imported from opentelemetry, which may then be absent.

Examples
--------
>>> tracer_for("validation") is None  # off: nothing configured in this process
True
>>> exporters_wanted("auto", {"OTEL_TRACES_EXPORTER": "otlp,console"})
('otlp', 'console')
>>> exporters_wanted("auto", {})  # eddy traces nothing unless asked to, whatever OpenTelemetry's default
()
>>> exporters_wanted("off", {"OTEL_TRACES_EXPORTER": "otlp"})
()
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from eddy.core.envconfig import SettingsError
from eddy.core.settings import Settings

if TYPE_CHECKING:
    try:  # the optional extra ``otel``: for the type checker only
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import Link, Span, SpanContext
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        pass

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "TraceSpan",
    "Tracer",
    "TracingUnavailable",
    "configure",
    "exporters_wanted",
    "install",
    "links_of",
    "tracer_for",
    "uninstall",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})
EXPORTERS = ("otlp", "console")
# OpenTelemetry keeps 128 links per span by default, fewer than a batch has records (500, learning's up to
# 5,000): eddy's provider keeps this many unless OTEL_SPAN_LINK_COUNT_LIMIT says otherwise.
DEFAULT_MAX_LINKS = 10_000
LINK_LIMIT_VARIABLE = "OTEL_SPAN_LINK_COUNT_LIMIT"
INSTRUMENTATION = "eddy"

# The provider of this process once tracing is configured; None: tracing is off.
_provider: TracerProvider | None = None


class TracingUnavailable(RuntimeError):
    """Tracing is configured but the OpenTelemetry SDK is not installed (``pip install 'eddy[otel]'``)."""


# Every import of opentelemetry is guarded (it is the optional extra ``otel``) and made only once tracing is on.
INSTALL_HINT = "pip install 'eddy[otel]'"


@dataclass(frozen=True)
class _Otel:
    """The OpenTelemetry API this module uses, imported on first use."""

    api: ModuleType  # opentelemetry.trace
    propagator: TraceContextTextMapPropagator


@functools.cache
def _otel() -> _Otel:
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise TracingUnavailable(f"tracing needs the OpenTelemetry API: {INSTALL_HINT}") from exc
    return _Otel(trace, TraceContextTextMapPropagator())


class Carrier(Protocol):
    """What the tracer reads of a consumed Kafka message (``confluent_kafka.Message`` or the harness's)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> Any: ...

    def headers(self) -> Any: ...


def exporters_wanted(choice: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters to run: from ``EDDY_TRACING`` (``choice``), or with ``auto`` from ``OTEL_TRACES_EXPORTER``.

    An exporter eddy does not run (zipkin, say) is an error naming the variable, not silence.

    >>> exporters_wanted("console", {"OTEL_TRACES_EXPORTER": "none"})
    ('console',)
    >>> exporters_wanted("auto", {"OTEL_TRACES_EXPORTER": "zipkin"})
    Traceback (most recent call last):
    ...
    eddy.core.envconfig.SettingsError: OTEL_TRACES_EXPORTER=zipkin: eddy exports spans with otlp or console (or none)
    """
    if choice == "off":
        return ()
    if choice != "auto":
        return (choice,)
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = tuple(name.strip() for name in raw.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise SettingsError(f"OTEL_TRACES_EXPORTER={raw}: eddy exports spans with otlp or console (or none)")
    return names


def configure(service: str, settings: Settings | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process if the settings ask for it; whether they did.

    Spans go through a batching processor to each exporter wanted, off the stream loop's thread; the
    provider flushes them when the process exits.
    """
    env = os.environ if env is None else env
    exporters = exporters_wanted((settings or Settings.from_env()).tracing, env)
    if not exporters:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(
            f"tracing is configured ({', '.join(exporters)}) but the OpenTelemetry SDK is not installed: {INSTALL_HINT}"
        ) from exc
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME") or f"eddy-{service}", "service.namespace": "eddy"}
    )
    max_links = None if env.get(LINK_LIMIT_VARIABLE) else DEFAULT_MAX_LINKS
    provider = SdkTracerProvider(resource=resource, span_limits=SpanLimits(max_links=max_links))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    install(provider)
    return True


def _exporter(name: str) -> Any:
    try:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingUnavailable(f"{name} export needs opentelemetry-exporter-otlp-proto-http: {INSTALL_HINT}") from exc
    # Endpoint, headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    return OTLPSpanExporter()


def install(provider: TracerProvider) -> None:
    """Trace this process's stream loops and requests with ``provider`` (tests install an in-memory one).

    Only loops and gateways built after this call trace: each asks :func:`tracer_for` once, when built.
    """
    global _provider
    _provider = provider


def uninstall() -> None:
    """Tracing off again for what is built from now on."""
    global _provider
    _provider = None


def tracer_for(service: str, topics: Sequence[str] = ()) -> Tracer | None:
    """The tracer of ``service`` reading ``topics``; None when tracing is off."""
    if _provider is None:
        return None
    return Tracer(_provider, service, topics)


def _version() -> str:
    try:
        return metadata.version("eddy")
    except metadata.PackageNotFoundError:
        return "unknown"


class Tracer:
    """Starts the spans of one service: one per batch of a stream loop, one per HTTP ingestion request.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> install(TracerProvider())
    >>> upstream = tracer_for("validation").batch([])
    >>> headers = upstream.stamp([("eddy.ingested_at_ms", b"1"), (TRACEPARENT, b"00-the-callers-context")])
    >>> [name for name, _ in headers]  # the batch's own context in place of the record's
    ['eddy.ingested_at_ms', 'traceparent']
    >>> upstream.end(produced=1)
    >>> uninstall()
    """

    def __init__(self, provider: TracerProvider, service: str, topics: Sequence[str] = ()) -> None:
        otel = _otel()
        self.service = service
        self._tracer = provider.get_tracer(INSTRUMENTATION, _version())
        self._propagator = otel.propagator
        self._consumer = otel.api.SpanKind.CONSUMER
        self._server = otel.api.SpanKind.SERVER
        self._attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "eddy.service": service,
        }
        if topics:
            self._attributes["eddy.topics"] = list(topics)

    def batch(self, messages: Sequence[Carrier]) -> TraceSpan:
        """The span of one batch, linked to the span of each record that carried a ``traceparent``."""
        attributes = {**self._attributes, "messaging.batch.message_count": len(messages)}
        links = links_of(messages, self._propagator)
        span = self._tracer.start_span(
            f"{self.service} process", kind=self._consumer, attributes=attributes, links=links
        )
        return TraceSpan(span, self._propagator)

    def request(self, headers: Mapping[str, str], name: str, attributes: Mapping[str, Any]) -> TraceSpan:
        """The span of one HTTP request: a child of the request's own ``traceparent`` if it has one, else a root."""
        parent = self._propagator.extract(headers)
        span = self._tracer.start_span(
            name, context=parent, kind=self._server, attributes={"eddy.service": self.service, **attributes}
        )
        return TraceSpan(span, self._propagator)


class TraceSpan:
    """A started span, and the headers that carry its context to the records written under it."""

    def __init__(self, span: Span, propagator: TraceContextTextMapPropagator) -> None:
        self.span = span
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=_otel().api.set_span_in_context(span))
        self.headers: list[tuple[str, bytes]] = [(k, v.encode()) for k, v in carrier.items()]

    def stamp(self, headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
        """``headers`` with this span's trace context in place of any they carried: a new list, theirs untouched."""
        if not headers:
            return list(self.headers)
        return [h for h in headers if h[0] not in TRACE_HEADERS] + self.headers

    def end(self, produced: int | None = None, error: str | None = None) -> None:
        """End the span: ``produced`` records written under it, or the ``error`` that ended it."""
        if produced is not None:
            self.span.set_attribute("eddy.records_out", produced)
        if error is not None:
            api = _otel().api
            self.span.set_status(api.Status(api.StatusCode.ERROR, error))
        self.span.end()


def links_of(messages: Sequence[Carrier], propagator: TraceContextTextMapPropagator) -> list[Link]:
    """The links of a batch to the spans that wrote its records: one per upstream span and partition, listing them.

    Every record that carries a valid ``traceparent`` is named on the link to its span: its key (the event id)
    in ``eddy.record_keys`` and its offset in ``eddy.record_offsets``, in the order read. The records of one
    upstream batch all carry its context, so one link stands for all of them: a link per record would repeat
    the same reference hundreds of times, at 7 to 10 µs more per record (docs/benchmarks.md).
    """
    api = _otel().api
    # (traceparent, tracestate, topic, partition) -> (keys, offsets)
    groups: dict[tuple[bytes, bytes | None, str, int], tuple[list[str], list[int]]] = {}
    for message in messages:
        headers = message.headers()
        if not headers:
            continue
        parent: bytes | None = None
        state: bytes | None = None
        for name, value in headers:
            if name == TRACEPARENT:
                parent = value
            elif name == TRACESTATE:
                state = value
        if not parent:
            continue
        where = (parent, state, message.topic() or "", message.partition() or 0)
        group = groups.get(where)
        if group is None:
            group = groups[where] = ([], [])
        key = message.key()
        group[0].append(key.decode("utf-8", errors="replace") if isinstance(key, bytes) else str(key or ""))
        group[1].append(message.offset() or 0)
    contexts: dict[tuple[bytes, bytes | None], SpanContext | None] = {}
    links: list[Link] = []
    for (parent, state, topic, partition), (keys, offsets) in groups.items():
        if (parent, state) in contexts:
            context = contexts[(parent, state)]
        else:
            carrier = {TRACEPARENT: parent.decode("ascii", errors="replace")}
            if state:
                carrier[TRACESTATE] = state.decode("ascii", errors="replace")
            found = api.get_current_span(propagator.extract(carrier)).get_span_context()
            context = contexts[(parent, state)] = found if found.is_valid else None
        if context is None:
            continue
        attributes = {
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.batch.message_count": len(keys),
            "eddy.record_keys": keys,
            "eddy.record_offsets": offsets,
        }
        links.append(api.Link(context, attributes))
    return links
