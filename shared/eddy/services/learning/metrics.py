"""Learning metrics."""

from collections.abc import Sequence

import numpy as np
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
FRESHNESS_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 300, 3600)
LABEL_TO_LEARNED = Histogram(
    "eddy_label_to_learned_seconds",
    "Seconds from a label's time (label_time_ms, its Kafka timestamp) to its being learned into the model.",
    ["stream", "model"],
    buckets=FRESHNESS_BUCKETS,
)
SNAPSHOTS = Counter("eddy_snapshots_published_total", "Model snapshots published.", ["stream", "model"])
SNAPSHOTS_TOO_LARGE = Counter(
    "eddy_snapshots_too_large_total",
    "Snapshots not published because they are over Kafka's record limit: inference keeps the last one that fit.",
    ["stream", "model"],
)
CHECKPOINT_SECONDS = Histogram("eddy_checkpoint_seconds", "Time to write a learner checkpoint.", ["stream"])


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(max(0, v))`` for every value, counted per bucket at once: one update per bucket and one
    to the sum, rather than a bucket search per value (a batch of learned labels observes thousands).

    >>> h = Histogram("h", "doc", buckets=(1, 5), registry=None)
    >>> observe_many(h, [0.5, 2, 7, -1])
    >>> samples = {(s.name[1:], s.labels.get("le")): s.value for s in h.collect()[0].samples}
    >>> [samples[("_bucket", le)] for le in ("1.0", "5.0", "+Inf")], samples[("_sum", None)]
    ([2.0, 3.0, 4.0], 9.5)
    """
    if not values:
        return
    clipped = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    # observe() counts a value in the first bucket whose upper bound is >= it: searchsorted(side="left").
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, clipped, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(clipped.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
