"""Inference metrics."""

from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter("eddy_predictions_total", "Predictions made.", ["stream", "model", "version"])
PREDICTION_LATENCY = Histogram(
    "eddy_prediction_latency_seconds",
    "From reading the input record to handing the prediction to the producer.",
    ["stream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
SNAPSHOT_SWAPS = Counter("eddy_snapshot_swaps_total", "Model snapshots hot-swapped in.", ["stream", "model"])
SNAPSHOT_LEARNED = Gauge("eddy_snapshot_learned", "Labels learned by the serving snapshot.", ["stream", "model"])
SNAPSHOT_AGE = Gauge("eddy_snapshot_age_seconds", "Age of the serving snapshot when it was swapped in.", ["stream"])
SNAPSHOTS_REFUSED = Counter(
    "eddy_snapshots_refused_total",
    "Model snapshots refused before loading (unsigned, bad signature, unknown key, bad checksum), by reason.",
    ["stream", "reason"],
)
CHAMPION_SWITCHES = Counter(
    "eddy_champion_switches_total", "Times the answering model version changed (promotion or rollback).", ["stream"]
)
# Freshness (issue 23): a label's time to the swap-in of the first snapshot that learned it.
LABEL_TO_SERVED = Histogram(
    "eddy_label_to_served_seconds",
    "Seconds from the newest label a swapped-in snapshot learned (its label time) to the swap-in.",
    ["stream", "model"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 300, 3600),
)
SERVED_LABEL_TIME = Gauge(
    "eddy_served_newest_label_timestamp_seconds",
    "Label time of the newest label the serving snapshot learned (time() minus this: the age of what is served).",
    ["stream", "model"],
)
