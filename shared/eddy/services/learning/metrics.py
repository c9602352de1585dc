"""Learning metrics."""

from prometheus_client import Counter, Gauge, Histogram

LEARNED = Counter("eddy_labels_learned_total", "Labels learned into the model.", ["stream", "model"])
DUPLICATES = Counter(
    "eddy_join_duplicates_total", "Inputs ignored because already joined or pending.", ["stream", "kind"]
)
JOIN_STATE = Gauge("eddy_join_state_size", "Entries waiting for their other half.", ["stream", "side"])
EVICTED = Counter(
    "eddy_join_evicted_total", "Pending entries evicted unjoined (state bound reached).", ["stream", "side"]
)
LABEL_DELAY = Histogram(
    "eddy_label_delay_seconds",
    "Label time minus event time of joined examples.",
    ["stream"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
# Freshness (issue 23): label time to learned, here; learned to served is inference's eddy_label_to_served_seconds.
FRESHNESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
LABEL_TO_LEARNED = Histogram(
    "eddy_label_to_learned_seconds",
    "Seconds from a label's time (label_time_ms, its Kafka timestamp) to its being learned into the model.",
    ["stream", "model"],
    buckets=FRESHNESS_BUCKETS,
)
SNAPSHOTS = Counter("eddy_snapshots_published_total", "Model snapshots published.", ["stream", "model"])
CHECKPOINT_SECONDS = Histogram("eddy_checkpoint_seconds", "Time to write a learner checkpoint.", ["stream"])
