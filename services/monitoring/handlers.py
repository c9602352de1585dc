"""Pure monitoring: quality windows and a drift detector per model, alerts when the concept moves.

Concept drift is detected with river's ADWIN on the model's error stream (0/1
error for classifiers, absolute error for regression). While a drift alert
fires no duplicate is raised; it resolves after ``resolve_after`` labeled
examples with no further drift.
"""

from __future__ import annotations

import json
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from river import drift, utils
from river import metrics as rmetrics

from services.monitoring import metrics
from shared.contracts import StreamContract
from shared.loop import BatchResult, InRecord, OutRecord
from shared.topics import StreamTopics


@dataclass
class ModelWatch:
    """Quality and drift state of one model version."""

    task: str
    window: int
    quality: Any = None
    detector: drift.ADWIN = field(default_factory=lambda: drift.ADWIN(delta=0.002))
    seen: int = 0
    firing_since: int | None = None
    last_drift_at: int = 0
    first_offset: int = -1
    # This version's metric children, looked up once: labels() costs more than the update itself.
    labeled_counter: Any = None
    quality_gauge: Any = None

    def __post_init__(self) -> None:
        base = rmetrics.MAE if self.task == "regression" else rmetrics.Accuracy
        self.quality = utils.Rolling(base, window_size=self.window)


@dataclass(frozen=True)
class MonitorConfig:
    quality_window: int = 500
    resolve_after: int = 2000
    min_examples: int = 200
    remember: int = 200_000


class Monitor:
    """The monitoring handler for one stream."""

    def __init__(
        self, contract: StreamContract, config: MonitorConfig = MonitorConfig(), clock: Callable[[], float] = time.time
    ) -> None:
        self.contract = contract
        self.config = config
        self.clock = clock
        self.topics = StreamTopics(contract.name)
        self.watches: dict[tuple[str, int], ModelWatch] = {}
        self._labeled_ids: OrderedDict[str, None] = OrderedDict()
        self._e2e_latency = metrics.E2E_LATENCY.labels(contract.name)

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for topic, count in Counter(record.topic for record in records).items():
            metrics.EVENTS.labels(self.contract.name, topic).inc(count)
        for record in records:
            if record.topic == self.topics.predictions:
                self._on_prediction(record.value)
            elif record.topic == self.topics.labeled:
                alert = self._on_labeled(record)
                if alert is not None:
                    result.outputs.append(OutRecord(self.topics.alerts, alert["alert_id"], alert))
        return result

    def _on_prediction(self, value: dict[str, Any]) -> None:
        ingested = value.get("ingested_at_ms")
        if ingested:
            self._e2e_latency.observe(max(0.0, (value["predicted_at_ms"] - ingested) / 1000))

    def _on_labeled(self, record: InRecord) -> dict[str, Any] | None:
        value = record.value
        # S.labeled is at-least-once: a replayed example must not count twice.
        if value["event_id"] in self._labeled_ids:
            return None
        self._labeled_ids[value["event_id"]] = None
        if len(self._labeled_ids) > self.config.remember:
            self._labeled_ids.popitem(last=False)
        model, version = value["model_name"], value["model_version"]
        watch = self.watches.get((model, version))
        if watch is None:
            watch = self.watches[(model, version)] = ModelWatch(self.contract.task, self.config.quality_window)
            name = "rolling_mae" if self.contract.task == "regression" else "rolling_accuracy"
            watch.labeled_counter = metrics.LABELED.labels(self.contract.name, model, str(version))
            watch.quality_gauge = metrics.QUALITY.labels(self.contract.name, model, str(version), name)
        if watch.first_offset < 0:
            watch.first_offset = record.offset
        watch.seen += 1
        y, y_pred = value["label"], value["prediction"]
        if y_pred is not None:
            watch.quality.update(y, y_pred)
        watch.labeled_counter.inc()
        watch.quality_gauge.set(watch.quality.get())
        error = _error(self.contract.task, y, y_pred)
        before = float(watch.detector.estimation)
        watch.detector.update(error)
        # ADWIN flags any change in the mean error; only a rise is concept drift. A fall is the model
        # recovering (after online learning adapted), which must not raise the alert again.
        worse = watch.detector.drift_detected and float(watch.detector.estimation) > before
        return self._alert_transition(watch, model, record, worse)

    def _alert_transition(self, watch: ModelWatch, model: str, record: InRecord, worse: bool) -> dict[str, Any] | None:
        if worse and watch.seen >= self.config.min_examples:
            watch.last_drift_at = watch.seen
            metrics.DRIFTS.labels(self.contract.name, model).inc()
            if watch.firing_since is None:
                watch.firing_since = watch.seen
                metrics.ALERTS_FIRING.labels(self.contract.name, "concept_drift").inc()
                return self._alert(watch, model, record, "firing")
        elif watch.firing_since is not None and watch.seen - watch.last_drift_at >= self.config.resolve_after:
            watch.firing_since = None
            metrics.ALERTS_FIRING.labels(self.contract.name, "concept_drift").dec()
            return self._alert(watch, model, record, "resolved")
        return None

    def _alert(self, watch: ModelWatch, model: str, record: InRecord, status: str) -> dict[str, Any]:
        mean_error = float(watch.detector.estimation)
        return {
            "alert_id": f"{self.contract.name}:concept_drift:{model}",
            "stream": self.contract.name,
            "kind": "concept_drift",
            "subject": model,
            "statistic": "adwin_mean_error",
            "value": mean_error,
            "threshold": 0.002,
            "window": f"ADWIN window of {int(watch.detector.width)} labeled examples",
            "severity": "warning",
            "status": status,
            "first_offset": max(watch.first_offset, record.offset - int(watch.detector.width)),
            "last_offset": record.offset,
            "source_topic": record.topic,
            "raised_at_ms": int(self.clock() * 1000),
            "details": json.dumps({"model_version": record.value["model_version"], "examples_seen": watch.seen}),
        }


def _error(task: str, y: Any, y_pred: Any) -> float:
    if task == "regression":
        return abs(float(y) - float(y_pred)) if y_pred is not None else 0.0
    return 0.0 if y_pred == y else 1.0
