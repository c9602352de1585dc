"""Validation metrics."""

from prometheus_client import Counter

VIOLATIONS = Counter(
    "eddy_validation_violations_total", "Contract rules broken, by field and rule.", ["stream", "field", "rule"]
)
