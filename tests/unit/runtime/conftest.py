"""Fixtures of the runtime's tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eddy.runtime import tracing


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on for the test, its finished spans in an ``InMemorySpanExporter``."""
    # Imported here: only the tracing tests need the OpenTelemetry SDK.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()
