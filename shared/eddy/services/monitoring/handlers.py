"""The monitoring handler of one stream: quality, drift and alerts from its topics. Pure: no Kafka here.

- ``S.labeled``: window quality per model version (and per segment), concept drift on the error stream.
- ``S.validated``: data drift of each feature against the reference profile from ``S.profiles``.
- ``S.predictions``: prediction drift per model, end-to-end latency, label coverage, and (when the contract
  turns it on) each version's label-free quality estimate (``estimated_quality.py``).
- ``S.models`` (through :meth:`Monitor.on_snapshot`) with ``S.labeled``: label freshness (label time →
  learned → served) and the ``learning_lag`` alert past the contract's ``freshness.max_lag`` (``freshness.py``).
- ``S.dlq`` and ``eddy.model-events`` (through :meth:`Monitor.on_dlq` and :meth:`Monitor.on_model_event`):
  the dashboard's DLQ rate, its promotion markers, each version's role (champion, challenger,
  shadow, archived) as the registry's latest alias table has it, and the production history.

Alerts leave as records for ``S.alerts``; :meth:`Monitor.tick` refreshes the
gauges and the dashboard document once per tick.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.ml.models import class_key
from eddy.ml.production_history import production_history
from eddy.ml.roles import StreamRoles, VersionKey, contract_roles, roles_of_event
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.monitoring import metrics
from eddy.services.monitoring.alerts import AlertBook, Evidence, Reading
from eddy.services.monitoring.config import MonitorConfig
from eddy.services.monitoring.drift import DataDrift, Judgement, ScoreDrift
from eddy.services.monitoring.estimated_quality import EstimatedWindow, VersionEstimates
from eddy.services.monitoring.freshness import Freshness
from eddy.services.monitoring.quality import POSITIVE_KEYS, ConceptWatch, QualityWindow, error_of
from eddy.services.monitoring.timeline import Timeline

MAX_SEGMENTS = 50
# Registry facts kept for the production history (a stream sees a handful a day; this is years of them).
MAX_REGISTRY_FACTS = 10_000
ESTIMATED_QUALITY = "estimated_quality"
# Periods of the production history in the dashboard document, the newest (`eddy models history` has all).
HISTORY_SHOWN = 50
LEARNING_LAG = "learning_lag"


class ModelWatch:
    """Quality and concept drift of one model version."""

    def __init__(self, contract: StreamContract, model: str, version: int, config: MonitorConfig) -> None:
        spec = contract.monitoring
        self.model, self.version, self.task = model, version, contract.task
        self.window = QualityWindow(contract.task, spec.quality_window)
        self.segments: dict[str, QualityWindow] = {}
        self.concept = ConceptWatch(spec.concept_drift, config.min_examples, config.resolve_after)
        self.evidence = Evidence(StreamTopics(contract.name).labeled)
        estimation = spec.estimated_quality
        self.estimates = VersionEstimates(estimation) if estimation is not None else None
        self.estimate_evidence = Evidence(StreamTopics(contract.name).predictions)
        self.labeled_counter = metrics.LABELED.labels(contract.name, model, str(version))
        # Counters exist from the start at 0, so that Prometheus's increase() sees the first drift.
        metrics.DRIFTS.labels(contract.name, model)

    @property
    def labeled(self) -> int:
        return self.window.seen

    @property
    def key(self) -> str:
        return f"{self.model}@{self.version}"

    def add(self, value: dict[str, Any], partition: int, offset: int) -> bool:
        """One labeled example; True when it revealed a rise of the error (concept drift)."""
        y, y_pred, probabilities = value["label"], value["prediction"], value["probabilities"]
        self.window.add(y, y_pred, probabilities)
        segment = value.get("segment")
        if segment is not None:
            window = self.segments.get(segment)
            if window is None and len(self.segments) < MAX_SEGMENTS:
                window = self.segments[segment] = QualityWindow(self.task, self.window.examples.maxlen or 1000)
            if window is not None:
                window.add(y, y_pred, probabilities)
        self.evidence.cover(partition, offset)
        if self.estimates is not None and (score := positive_score(probabilities)) is not None:
            self.estimates.label(value["event_id"], score, is_positive(y_pred), is_positive(y))
        error = error_of(self.task, y, y_pred)
        return error is not None and self.concept.update(error)

    def predicted(self, value: dict[str, Any], partition: int, offset: int) -> EstimatedWindow | None:
        """One prediction of this version into its estimate; the window it closed, estimated, if any."""
        score = positive_score(value["probabilities"])
        if self.estimates is None or score is None:
            return None
        self.estimate_evidence.cover(partition, offset)
        at_ms = int(value["predicted_at_ms"])
        return self.estimates.predict(
            value["event_id"], score, is_positive(value["prediction"]), value.get("segment"), at_ms
        )


class Monitor:
    """The monitoring handler for one stream."""

    def __init__(
        self,
        contract: StreamContract,
        config: MonitorConfig = MonitorConfig(),  # noqa: B008 (frozen, so one shared default is safe)
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.contract = contract
        self.config = config
        self.clock = clock
        self.topics = StreamTopics(contract.name)
        self.alerts = AlertBook(contract.name, clock)
        self.watches: dict[tuple[str, int], ModelWatch] = {}
        numeric = {f.name for f in contract.features if f.type in ("double", "long")}
        self.data_drift = DataDrift(
            [f.name for f in contract.features], numeric, contract.monitoring.data_drift, self.topics.validated
        )
        self.score_drift: dict[tuple[str, int], ScoreDrift] = {}
        self.predicted: Counter[str] = Counter()
        self.dlq_reasons: Counter[str] = Counter()
        self.timeline = Timeline(config.history)
        # Until the registry's first event arrives, the contract's starting roles (its first model champion).
        self.roles: StreamRoles = contract_roles(contract)
        self.document: dict[str, Any] = {}
        self.registry_facts: list[dict[str, Any]] = []
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._ticked_at = 0.0
        self._reported_detections: Counter[str] = Counter()
        for name in self.data_drift.detectors:
            metrics.FEATURE_DETECTIONS.labels(contract.name, name)
        self._e2e = metrics.E2E_LATENCY.labels(contract.name)
        self.freshness: dict[VersionKey, Freshness] = {}
        self.feedback_ends: dict[str, int] = {}

    # -- records -------------------------------------------------------------------------------------

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        by_topic: dict[str, list[InRecord]] = defaultdict(list)
        for record in records:
            by_topic[record.topic].append(record)
        alerts: list[dict[str, Any]] = []
        for topic, batch in by_topic.items():
            metrics.EVENTS.labels(self.contract.name, topic).inc(len(batch))
            if topic == self.topics.validated:
                alerts += self._judge(self._on_validated(batch))
            elif topic == self.topics.predictions:
                judgements, estimated = self._on_predictions(batch)
                alerts += estimated + self._judge(judgements)
            elif topic == self.topics.labeled:
                alerts += self._on_labeled(batch)
        alerts += self._judge_freshness()
        return BatchResult(outputs=[OutRecord(self.topics.alerts, a["alert_id"], a) for a in alerts])

    def _on_validated(self, batch: list[InRecord]) -> list[Judgement]:
        self.timeline.count("validated", len(batch))
        return self.data_drift.observe([r.value for r in batch], [(r.partition, r.offset) for r in batch])

    def _on_predictions(self, batch: list[InRecord]) -> tuple[list[Judgement], list[dict[str, Any]]]:
        latencies = []
        by_model: dict[tuple[str, int], list[InRecord]] = defaultdict(list)
        for record in batch:
            value = record.value
            by_model[(value["model_name"], value["model_version"])].append(record)
            if value["served"] and value.get("ingested_at_ms"):
                latencies.append(float(value["predicted_at_ms"] - value["ingested_at_ms"]))
        for ms in latencies:
            self._e2e.observe(max(0.0, ms / 1000))
        self.timeline.latencies(latencies)
        self.timeline.count("predictions", sum(1 for r in batch if r.value["served"]))
        judgements = []
        alerts = []
        for (model, version), records in by_model.items():
            if self.contract.monitoring.estimated_quality is not None:
                alerts += self._estimate(self._watch(model, version), records)
            self.predicted[model] += len(records)
            drift = self.score_drift.get((model, version))
            if drift is None:
                categorical = self.contract.task == "multiclass"
                drift = ScoreDrift(
                    model, self.contract.monitoring.prediction_drift, categorical, self.topics.predictions
                )
                self.score_drift[(model, version)] = drift
            scores = [self._score(r.value) for r in records]
            judgements += drift.observe(scores, [(r.partition, r.offset) for r in records])
        return judgements, alerts

    def _estimate(self, watch: ModelWatch, records: list[InRecord]) -> list[dict[str, Any]]:
        """Feed a version's predictions to its estimate; judge the champion's alert at each window it closes."""
        alerts = []
        for record in records:
            window = watch.predicted(record.value, record.partition, record.offset)
            if window is None or watch.estimates is None:
                continue
            if VersionKey(watch.model, watch.version) == self.roles.champion:
                # Judged at once, not with the batch's other judgements: the next window's line depends on it.
                firing = watch.estimates.firing(window, self.alerts.is_open(ESTIMATED_QUALITY, watch.model))
                if firing is not None:
                    reading = self._estimated_reading(watch, window, (record.partition, record.offset))
                    alerts += self._judge([Judgement(ESTIMATED_QUALITY, watch.model, firing, reading)])
            watch.estimate_evidence = Evidence(self.topics.predictions)
        return alerts

    def _estimated_reading(self, watch: ModelWatch, window: EstimatedWindow, trigger: tuple[int, int]) -> Reading:
        estimates = watch.estimates
        assert estimates is not None and estimates.reference is not None
        accuracy = window.estimated["accuracy"]
        return Reading(
            "estimated_accuracy",
            accuracy.value,
            estimates.reference - estimates.spec.threshold,
            f"{accuracy.n} predictions of {watch.key}, calibrated ({estimates.spec.calibration}) on its last "
            f"{len(estimates.calibration)} labels",
            watch.estimate_evidence,
            trigger,
            details={
                "model_version": watch.version,
                "window": window.index,
                "low": accuracy.low,
                "high": accuracy.high,
                "reference_accuracy": estimates.reference,
                "max_drop": estimates.spec.threshold,
            },
        )

    def _score(self, value: dict[str, Any]) -> Any:
        if self.contract.task == "binary":
            return positive_score(value["probabilities"])
        return value["prediction"]

    def _on_labeled(self, batch: list[InRecord]) -> list[dict[str, Any]]:
        alerts = []
        counted: Counter[ModelWatch] = Counter()
        freshness: dict[ModelWatch, Freshness] = {}  # looked up once per version and batch
        for record in batch:
            value = record.value
            # S.labeled is at-least-once, and every model has its own example of an event.
            seen_key = (value["model_name"], value["event_id"])
            if seen_key in self._seen:
                continue
            self._seen[seen_key] = None
            if len(self._seen) > self.config.remember:
                self._seen.popitem(last=False)
            watch = self._watch(value["model_name"], value["model_version"])
            counted[watch] += 1
            fresh = freshness.get(watch)
            if fresh is None:
                fresh = freshness[watch] = self._freshness_of(VersionKey(watch.model, watch.version))
            fresh.learned(value["label_time_ms"], value["joined_at_ms"], record.partition, record.offset)
            rose = watch.add(value, record.partition, record.offset)
            if rose:
                metrics.DRIFTS.labels(self.contract.name, watch.model).inc()
            firing = watch.concept.drifting
            if firing != self.alerts.is_open("concept_drift", watch.model):
                alert = self.alerts.judge("concept_drift", watch.model, firing, self._concept(watch, record))
                if alert is not None:
                    alerts.append(alert)
                    self._mark(alert)
        for watch, n in counted.items():
            watch.labeled_counter.inc(n)
        self.timeline.count("labeled", sum(counted.values()))
        return alerts

    def _watch(self, model: str, version: int) -> ModelWatch:
        watch = self.watches.get((model, version))
        if watch is None:
            watch = self.watches[(model, version)] = ModelWatch(self.contract, model, version, self.config)
        return watch

    def _concept(self, watch: ModelWatch, record: InRecord) -> Reading:
        spec = self.contract.monitoring.concept_drift
        return Reading(
            f"{spec.name}_mean_error",
            watch.concept.mean_error,
            float(dict(spec.params).get("delta", 0.0)),
            f"{spec.name} on the error stream of {watch.key}; the last {watch.concept.averaged} errors averaged",
            watch.evidence,
            (record.partition, record.offset),
            details={"model_version": watch.version, "examples_seen": watch.labeled, "rises": watch.concept.rises},
        )

    def _judge(self, judgements: list[Judgement]) -> list[dict[str, Any]]:
        alerts = []
        for j in judgements:
            alert = self.alerts.judge(j.kind, j.subject, j.firing, j.reading)
            if alert is not None:
                alerts.append(alert)
                self._mark(alert)
        return alerts

    def _mark(self, alert: dict[str, Any]) -> None:
        kind = "alert" if alert["status"] == "firing" else "resolved"
        self.timeline.mark(alert["raised_at_ms"], kind, f"{alert['kind']} {alert['subject']} {alert['status']}")

    # -- control inputs ------------------------------------------------------------------------------

    def on_profile(self, profile: dict[str, Any]) -> None:
        if profile.get("kind") == "reference":
            self.data_drift.set_reference(profile)

    def on_snapshot(self, snapshot: dict[str, Any]) -> None:
        """A snapshot on S.models: from learning (it learned labels up to ``newest_label_ms``), or the registry's."""
        newest = snapshot.get("newest_label_ms") or 0
        if newest > 0:
            key = VersionKey(snapshot["model_name"], snapshot["model_version"])
            read = {k: v for k, v in snapshot.get("source_offsets", {}).items() if k.startswith(self.topics.feedback)}
            learned, shard = snapshot.get("learned_count", 0), snapshot.get("shard")
            self._freshness_of(key).served(newest, snapshot["created_at_ms"], read, learned, shard)

    def on_feedback_ends(self, ends: dict[str, int]) -> None:
        """Where S.feedback ends now ("topic:partition" -> offset): labels past a snapshot's reading wait."""
        self.feedback_ends = ends
        for fresh in self.freshness.values():
            fresh.input_end(ends)

    def _freshness_of(self, key: VersionKey) -> Freshness:
        found = self.freshness.get(key)
        if found is None:
            found = self.freshness[key] = Freshness(self.topics.labeled)
            found.input_end(self.feedback_ends)
        return found

    def _judge_freshness(self) -> list[dict[str, Any]]:
        """The ``learning_lag`` alert of the champion, when the contract sets ``freshness.max_lag``."""
        spec, champion = self.contract.monitoring.freshness, self.roles.champion
        fresh = self.freshness.get(champion)
        if spec is None or fresh is None:
            return []
        now_ms = int(self.clock() * 1000)
        lag_s, max_lag_s = fresh.lag_s(now_ms), spec.max_lag_ms / 1000
        if (lag_s > max_lag_s) == self.alerts.is_open(LEARNING_LAG, champion.name):
            return []
        reading = Reading(
            "freshness_lag_seconds",
            lag_s,
            max_lag_s,
            f"labeled examples of {champion} learned after its served snapshot",
            fresh.evidence,
            fresh.trigger,
            details={
                "model_version": champion.version,
                "served_label_ms": fresh.served_ms,
                "newest_learned_label_ms": fresh.newest_learned_ms,
            },
        )
        return self._judge([Judgement(LEARNING_LAG, champion.name, lag_s > max_lag_s, reading)])

    def on_dlq(self, reason: str, count: int = 1) -> None:
        self.dlq_reasons[reason] += count
        self.timeline.count("dlq", count)

    def on_model_event(self, event: dict[str, Any]) -> None:
        roles = roles_of_event(event)
        if roles is not None:
            self.roles = roles
            self.registry_facts.append(event)
            del self.registry_facts[:-MAX_REGISTRY_FACTS]
        if event["event_type"] in ("promoted", "rolled_back"):
            label = f"{event['model_name']} v{event['model_version']} {event['event_type'].replace('_', ' ')}"
            self.timeline.mark(int(event["at_ms"]), "promotion", label)

    # -- ticks ---------------------------------------------------------------------------------------

    def maybe_tick(self) -> None:
        now = self.clock()
        if now - self._ticked_at >= self.config.tick_s:
            self.tick(now)

    def tick(self, now: float | None = None) -> None:
        """Refresh gauges, close the dashboard's tick and publish a new dashboard document."""
        at = self.clock() if now is None else now
        self._ticked_at = at
        stream = self.contract.name
        quality: dict[str, dict[str, float]] = {}
        for watch in self.watches.values():
            values = quality[watch.key] = watch.window.metrics()
            for name, value in values.items():
                metrics.QUALITY.labels(stream, watch.model, str(watch.version), name, "all").set(value)
            for segment, window in watch.segments.items():
                for name, value in window.metrics().items():
                    metrics.QUALITY.labels(stream, watch.model, str(watch.version), name, segment).set(value)
        labeled_by_model: Counter[str] = Counter()
        for watch in self.watches.values():
            labeled_by_model[watch.model] += watch.labeled
        for model, predicted in self.predicted.items():
            metrics.LABEL_COVERAGE.labels(stream, model).set(min(1.0, labeled_by_model[model] / predicted))
        for name, total in self.data_drift.detections.items():
            if total > self._reported_detections[name]:
                metrics.FEATURE_DETECTIONS.labels(stream, name).inc(total - self._reported_detections[name])
                self._reported_detections[name] = total
        data = {name: feature.psi for name, feature in self.data_drift.watches.items()}
        for name, psi in data.items():
            if psi is not None:
                metrics.FEATURE_PSI.labels(stream, name).set(psi)
        scores = {f"{m}@{v}": d.psi for (m, v), d in self.score_drift.items()}
        for (model, _), drift in self.score_drift.items():
            if drift.psi is not None:
                metrics.PREDICTION_PSI.labels(stream, model).set(drift.psi)
        estimated = self._estimate_gauges()
        for key, fresh in self.freshness.items():
            metrics.FRESHNESS_LAG.labels(stream, key.name, str(key.version)).set(fresh.lag_s(int(at * 1000)))
        gauges: dict[str, dict[str, Any]] = {
            "quality": quality,
            "data_drift": data,
            "prediction_drift": scores,
            "estimated_accuracy": estimated,
        }
        self.timeline.close(int(at * 1000), gauges)
        self.document = self._document(at)

    def _estimate_gauges(self) -> dict[str, float]:
        """Set the estimate gauges and the settled windows' errors; each version's latest estimated accuracy."""
        stream, latest = self.contract.name, {}
        for watch in self.watches.values():
            estimates = watch.estimates
            if estimates is None:
                continue
            estimates.refresh()
            version = str(watch.version)
            window = estimates.latest
            if window is not None:
                latest[watch.key] = window.estimated["accuracy"].value
                _set_estimates(stream, watch.model, version, "all", window.estimated)
            for segment, values in estimates.by_segment.items():
                _set_estimates(stream, watch.model, version, segment, values)
            for settled in estimates.settled:
                for metric in settled.estimated:
                    error = settled.error(metric)
                    if error is not None:
                        metrics.ESTIMATION_ERROR.labels(stream, watch.model, version, metric).set(error)
                        metrics.ESTIMATION_ABS_ERROR.labels(stream, watch.model, metric).observe(abs(error))
            estimates.settled.clear()
        return latest

    def role_of(self, model: str, version: int) -> str:
        """A version's alias in the latest table; "unregistered" for one the table does not know (yet)."""
        return self.roles.alias_of(VersionKey(model, version)) or "unregistered"

    def _document(self, now: float) -> dict[str, Any]:
        champion = self.roles.champion

        def order(w: ModelWatch) -> tuple[bool, str, int]:
            return (VersionKey(w.model, w.version) != champion, w.model, -w.version)

        watches = sorted(self.watches.values(), key=order)
        spec = self.contract.monitoring.data_drift
        return {
            "stream": self.contract.name,
            "task": self.contract.task,
            "generated_at_ms": int(now * 1000),
            "tick_s": self.config.tick_s,
            "series": self.timeline.series(),
            "markers": list(self.timeline.markers),
            "models": [
                {
                    "model": w.model,
                    "version": w.version,
                    "role": self.role_of(w.model, w.version),
                    "labeled": w.labeled,
                    "metrics": dict(w.window.metrics()),
                    "segments": {s: {**q.metrics(), "labeled": q.seen} for s, q in sorted(w.segments.items())},
                    "estimated": w.estimates.to_json() if w.estimates is not None else None,
                }
                for w in watches
            ],
            "drift": [
                {
                    "feature": f.name,
                    "psi": self.data_drift.watches[f.name].psi if f.name in self.data_drift.watches else None,
                    "threshold": spec.psi_threshold,
                    "window": spec.window,
                    "detector_drifts": self.data_drift.detections.get(f.name, 0),
                    "status": _drift_status(self.data_drift, f.name),
                }
                for f in self.contract.features
            ],
            "alerts": [dict(a) for a in self.alerts.open.values()],
            "dlq": {"total": sum(self.dlq_reasons.values()), "by_reason": dict(self.dlq_reasons)},
            "history": [p.to_json() for p in production_history(self.registry_facts)[-HISTORY_SHOWN:]],
            "freshness": self._freshness_document(now),
        }

    def _freshness_document(self, now: float) -> dict[str, Any] | None:
        """The champion's label freshness (label → learned → served), None before any of its labels."""
        champion, spec = self.roles.champion, self.contract.monitoring.freshness
        fresh = self.freshness.get(champion)
        if fresh is None:
            return None
        max_lag_s = None if spec is None else spec.max_lag_ms / 1000
        return {"model": champion.name, "version": champion.version, **fresh.summary(int(now * 1000), max_lag_s)}


def positive_score(probabilities: dict[str, float] | None) -> float | None:
    """A binary prediction's P(true), from its probability map (None without one).

    >>> positive_score({"true": 0.8, "false": 0.2}), positive_score(None)
    (0.8, None)
    """
    if not probabilities:
        return None
    # Two lookups, not a loop over POSITIVE_KEYS: this runs for every prediction and labeled example.
    score = probabilities.get("true")
    if score is None:
        score = probabilities.get("1")
    return None if score is None else float(score)


def is_positive(value: Any) -> bool:
    """Whether a binary label or prediction is the class ``true``.

    >>> is_positive(True), is_positive("1"), is_positive("false")
    (True, True, False)
    """
    return value is True or (value is not False and class_key(value) in POSITIVE_KEYS)


def _set_estimates(stream: str, model: str, version: str, segment: str, values: dict[str, Any]) -> None:
    for metric, estimate in values.items():
        for bound in ("value", "low", "high"):
            metrics.ESTIMATED_QUALITY.labels(stream, model, version, metric, bound, segment).set(
                getattr(estimate, bound)
            )


def _drift_status(data_drift: DataDrift, feature: str) -> str:
    watch = data_drift.watches.get(feature)
    if watch is None:
        return "no_reference"
    return "drifting" if watch.drifting else "ok"
