"""Model registry metrics."""

from prometheus_client import Counter, Gauge

VERSIONS = Counter("eddy_registry_versions_total", "Model versions registered.", ["stream"])
PROMOTIONS = Counter("eddy_registry_promotions_total", "Champions promoted.", ["stream"])
ROLLBACKS = Counter("eddy_registry_rollbacks_total", "Champions rolled back.", ["stream"])
REFUSALS = Counter("eddy_registry_refusals_total", "Requests refused as no longer valid.", ["stream", "request"])
BAD_CANDIDATES = Counter("eddy_registry_bad_candidates_total", "Candidates sent to the dead letters.", ["reason"])
ARTIFACT_BYTES = Gauge("eddy_registry_artifact_bytes", "Bytes of model artifacts in the registry's store.")
OUTBOX_PENDING = Gauge("eddy_registry_outbox_pending", "Model events decided but not yet acknowledged by Kafka.")
