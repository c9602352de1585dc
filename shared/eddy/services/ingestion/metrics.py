"""Ingestion metrics."""

from prometheus_client import Counter, Histogram

RECORDS = Counter("eddy_ingested_total", "Records received over HTTP.", ["stream", "kind", "outcome"])
REQUEST_SECONDS = Histogram(
    "eddy_ingest_request_seconds",
    "Time from request to broker acknowledgement.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
