"""Prometheus metrics of the registry, on a dedicated collector registry.

A dedicated registry keeps several app instances (tests, embedded use) from
colliding on the process-global default registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RegistryMetrics:
    """Request counters, a latency histogram and state gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "eddy_schema_registry_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "eddy_schema_registry_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.schemas = Gauge("eddy_schema_registry_schemas", "Distinct schema ids ever issued.", registry=self.registry)
        self.subjects = Gauge(
            "eddy_schema_registry_subjects", "Subjects with at least one live version.", registry=self.registry
        )
