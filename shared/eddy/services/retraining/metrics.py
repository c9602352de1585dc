"""Retraining metrics."""

from prometheus_client import Counter, Gauge, Histogram

ALERTS = Counter("eddy_retraining_alerts_total", "Alerts received by retraining.", ["stream", "kind", "status"])
REQUESTS = Counter("eddy_retrain_requests_total", "Retrains requested.", ["stream", "reason"])
SUPPRESSED = Counter(
    "eddy_retrain_triggers_suppressed_total",
    "Triggers that fired but asked for no retrain (cooldown, a trial under way, drift trigger off).",
    ["stream", "reason", "why"],
)
CANDIDATES = Counter("eddy_retraining_candidates_total", "Challengers published to the registry.", ["stream", "model"])
REJECTED = Counter(
    "eddy_retraining_candidates_rejected_total", "Challengers rejected before registration.", ["stream", "check"]
)
TRIALS = Counter(
    "eddy_retraining_trials_decided_total", "Shadow trials and probations decided.", ["stream", "kind", "decision"]
)
TRIAL_PAIRS = Gauge("eddy_retraining_trial_pairs", "Paired labeled examples of the open trial.", ["stream", "kind"])
TRAINING_SECONDS = Histogram(
    "eddy_retraining_training_seconds",
    "Time to train, evaluate and check one retrain request's candidates.",
    ["stream"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WINDOW = Gauge(
    "eddy_retraining_window_examples", "Labeled examples of the champion in the training window.", ["stream"]
)
