"""Monitoring metrics, labelled by stream, model and version like every eddy metric."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("eddy_monitored_records_total", "Records seen by monitoring.", ["stream", "topic"])
E2E_LATENCY = Histogram(
    "eddy_end_to_end_latency_seconds",
    "From ingestion to prediction.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUALITY = Gauge(
    "eddy_model_quality",
    "Model quality over the sliding window of labeled examples; segment 'all' or one segment's value.",
    ["stream", "model", "version", "metric", "segment"],
)
LABELED = Counter("eddy_model_labeled_total", "Labeled examples seen.", ["stream", "model", "version"])
LABEL_COVERAGE = Gauge("eddy_label_coverage", "Share of a model's predictions that got a label.", ["stream", "model"])
FEATURE_PSI = Gauge(
    "eddy_feature_psi", "PSI of the last window of a feature against the reference.", ["stream", "feature"]
)
FEATURE_DETECTIONS = Counter(
    "eddy_feature_drift_detections", "Changes the streaming detector saw in a feature's values.", ["stream", "feature"]
)
PREDICTION_PSI = Gauge("eddy_prediction_psi", "PSI of the last window of a model's scores.", ["stream", "model"])
DRIFTS = Counter("eddy_concept_drifts_total", "Concept drifts detected on the error stream.", ["stream", "model"])
ALERTS_FIRING = Gauge("eddy_alerts_firing", "Alerts currently firing.", ["stream", "kind"])
ALERTS = Counter("eddy_alerts", "Alert records raised, by status.", ["stream", "kind", "status"])
ESTIMATED_QUALITY = Gauge(
    "eddy_estimated_quality",
    "Label-free estimate (CBPE) of a version's quality over its last window of predictions; bound is value, "
    "low or high (the 95% band); segment 'all' or one segment's value.",
    ["stream", "model", "version", "metric", "bound", "segment"],
)
ESTIMATION_ERROR = Gauge(
    "eddy_estimation_error",
    "Estimate minus realized value of the newest window whose labels arrived.",
    ["stream", "model", "version", "metric"],
)
ESTIMATION_ABS_ERROR = Histogram(
    "eddy_estimation_abs_error",
    "Absolute error of each settled window's estimate, once its labels arrived.",
    ["stream", "model", "metric"],
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2),
)
FRESHNESS_LAG = Gauge(
    "eddy_freshness_lag_seconds",
    "Age of the newest label a version's served snapshot learned, while a newer label is learned and not served "
    "(0: it serves every label learned); eddy.services.monitoring.freshness.",
    ["stream", "model", "version"],
)
