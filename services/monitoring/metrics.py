"""Monitoring metrics (labelled by stream, model and version)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("eddy_monitored_records_total", "Records seen by monitoring.", ["stream", "topic"])
E2E_LATENCY = Histogram(
    "eddy_end_to_end_latency_seconds",
    "From ingestion to prediction.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUALITY = Gauge(
    "eddy_model_quality", "Rolling model quality over labeled events.", ["stream", "model", "version", "metric"]
)
LABELED = Counter("eddy_model_labeled_total", "Labeled examples seen.", ["stream", "model", "version"])
DRIFTS = Counter("eddy_concept_drifts_total", "Concept drifts detected on the error stream.", ["stream", "model"])
ALERTS_FIRING = Gauge("eddy_alerts_firing", "Alerts currently firing.", ["stream", "kind"])
