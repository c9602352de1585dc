"""Retraining metrics."""

from prometheus_client import Counter

ALERTS = Counter("eddy_retraining_alerts_total", "Alerts received by retraining.", ["stream", "kind", "status"])
REQUESTS = Counter("eddy_retrain_requests_total", "Retrains requested.", ["stream", "reason"])
