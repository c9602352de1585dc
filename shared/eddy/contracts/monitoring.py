"""The ``monitoring:`` section of a stream contract: how its quality and drift are watched.

.. code-block:: yaml

    monitoring:
      segment: region            # slice model quality by this feature (the bias check)
      quality_window: 1000       # labeled examples per sliding quality window
      concept_drift:             # river detector on each model's error stream
        detector: adwin          # adwin | page_hinkley | kswin
        params: {delta: 0.002}
      data_drift:
        window: 1000             # validated events per PSI window
        psi_threshold: 0.2
      prediction_drift:
        window: 1000             # predictions per PSI window of the score distribution
        psi_threshold: 0.2
        warmup: 1000             # predictions skipped before the reference, while a new model settles
      estimated_quality:         # label-free quality (CBPE), binary streams only; off without this key
        window: 1000             # predictions per estimate
        calibration_window: 2000 # most recent labeled examples the calibrator is fitted on
        calibration: isotonic    # isotonic | binning | none (the scores are calibrated already)
        threshold: 0.05          # alert when estimated accuracy falls this far below the version's reference
      freshness:                 # label freshness of the served model; no alert without this key
        max_lag: 30s             # a learning_lag alert fires while the served model's freshness lag exceeds it

Every key is optional; the defaults are above, and ``estimated_quality: {}`` turns
the estimate on with them. Freshness (label time → learned → served) is measured
and shown whatever the contract says; ``freshness.max_lag`` sets the alert's
threshold (``eddy.services.monitoring.freshness``). A bad detector name or parameter fails at load time,
like a bad model spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from river import drift

from eddy.contracts.durations import parse_duration_ms
from eddy.contracts.shapes import Fields, count, duration, number, one_of, section, text, unknown_keys

DETECTORS: dict[str, Any] = {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley, "kswin": drift.KSWIN}
CALIBRATIONS = ("isotonic", "binning", "none")

# Each mapping's keys and what they hold: the parser refuses any other key, and eddy.contracts.contract_schema
# publishes these as the contract's JSON Schema.
DETECTOR_FIELDS: Fields = {
    "detector": one_of(DETECTORS),
    "params": {"type": ["object", "null"], "description": "the river detector's constructor parameters"},
}
WINDOW_FIELDS: Fields = {"window": count(10), "psi_threshold": number(above=0), "warmup": count(0)}
ESTIMATION_FIELDS: Fields = {
    "window": count(10),
    "calibration_window": count(10),
    "calibration": one_of(CALIBRATIONS),
    "threshold": number(above=0, below=1),
}
# Longer than 0: a whole number of 0 ms is refused here, "0s" by the parser.
FRESHNESS_FIELDS: Fields = {"max_lag": {**duration(), "minimum": 1}}
MONITORING_FIELDS: Fields = {
    "segment": text(description="a feature (string, boolean or long) to slice model quality by"),
    "quality_window": count(10),
    "concept_drift": section(DETECTOR_FIELDS, "the river detector on each model's error stream"),
    "data_drift": section(WINDOW_FIELDS, "PSI of each feature, per window of validated events"),
    "prediction_drift": section(WINDOW_FIELDS, "PSI of the score distribution, per window of predictions"),
    "estimated_quality": section(ESTIMATION_FIELDS, "label-free quality (CBPE), binary streams only"),
    "freshness": section(FRESHNESS_FIELDS, "the learning_lag alert's threshold"),
}


@dataclass(frozen=True)
class DetectorSpec:
    """A river drift detector by name, with its constructor parameters."""

    name: str = "adwin"
    params: tuple[tuple[str, Any], ...] = (("delta", 0.002),)

    def build(self) -> Any:
        return DETECTORS[self.name](**dict(self.params))


@dataclass(frozen=True)
class WindowSpec:
    window: int = 1000
    psi_threshold: float = 0.2
    warmup: int = 0


@dataclass(frozen=True)
class EstimationSpec:
    """Label-free quality estimation (``eddy.services.monitoring.estimation``): its windows, calibration and alert."""

    window: int = 1000
    calibration_window: int = 2000
    calibration: str = "isotonic"
    threshold: float = 0.05


@dataclass(frozen=True)
class FreshnessSpec:
    """The ``learning_lag`` alert: it fires while the served model's freshness lag exceeds ``max_lag_ms``."""

    max_lag_ms: int = 30_000


@dataclass(frozen=True)
class MonitoringSpec:
    """How a stream is monitored (all defaults when the contract has no ``monitoring:`` section)."""

    segment: str | None = None
    quality_window: int = 1000
    concept_drift: DetectorSpec = field(default_factory=DetectorSpec)
    data_drift: WindowSpec = field(default_factory=WindowSpec)
    prediction_drift: WindowSpec = field(default_factory=lambda: WindowSpec(warmup=1000))
    estimated_quality: EstimationSpec | None = None
    freshness: FreshnessSpec | None = None


def parse_monitoring(doc: Any, features: dict[str, str]) -> MonitoringSpec:
    """The monitoring spec from a contract's ``monitoring:`` mapping; ``features`` maps name to type.

    Raises
    ------
    ValueError
        Naming the key that is wrong.

    Examples
    --------
    >>> doc = {"segment": "region", "concept_drift": {"detector": "page_hinkley"}}
    >>> spec = parse_monitoring(doc, {"region": "string"})
    >>> spec.segment, spec.concept_drift.name, spec.data_drift.window
    ('region', 'page_hinkley', 1000)
    >>> parse_monitoring({"segment": "nope"}, {"x": "double"})
    Traceback (most recent call last):
    ...
    ValueError: monitoring.segment 'nope' is not a feature of the contract
    """
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError("monitoring must be a mapping")
    _no_unknown(doc, MONITORING_FIELDS, "monitoring")
    segment = doc.get("segment")
    if segment is not None and segment not in features:
        raise ValueError(f"monitoring.segment {segment!r} is not a feature of the contract")
    if segment is not None and features[segment] == "double":
        raise ValueError(
            f"monitoring.segment {segment!r} is a double: segments must be categories (string, boolean, long)"
        )
    default = MonitoringSpec()
    return MonitoringSpec(
        segment=segment,
        quality_window=_positive(doc.get("quality_window", default.quality_window), "monitoring.quality_window"),
        concept_drift=_detector(doc.get("concept_drift")),
        data_drift=_window(doc.get("data_drift"), "monitoring.data_drift", default.data_drift),
        prediction_drift=_window(doc.get("prediction_drift"), "monitoring.prediction_drift", default.prediction_drift),
        estimated_quality=_estimation(doc["estimated_quality"]) if "estimated_quality" in doc else None,
        freshness=_freshness(doc["freshness"]) if "freshness" in doc else None,
    )


def _freshness(doc: Any) -> FreshnessSpec:
    """The ``freshness`` mapping (empty or null: every default).

    >>> _freshness({"max_lag": "2s"})
    FreshnessSpec(max_lag_ms=2000)
    >>> _freshness({"max_lag": "0s"})
    Traceback (most recent call last):
    ...
    ValueError: monitoring.freshness.max_lag must be longer than 0, not '0s'
    >>> _freshness({"lag": "2s"})
    Traceback (most recent call last):
    ...
    ValueError: monitoring.freshness: unknown key(s) lag; known: max_lag
    """
    where = "monitoring.freshness"
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping like {{max_lag: 30s}}")
    _no_unknown(doc, FRESHNESS_FIELDS, where)
    value = doc.get("max_lag", "30s")
    max_lag_ms = parse_duration_ms(value, f"{where}.max_lag")
    if max_lag_ms <= 0:
        raise ValueError(f"{where}.max_lag must be longer than 0, not {value!r}")
    return FreshnessSpec(max_lag_ms)


def _detector(doc: Any) -> DetectorSpec:
    if doc is None:
        return DetectorSpec()
    if not isinstance(doc, dict):
        raise ValueError("monitoring.concept_drift must be a mapping like {detector: adwin, params: {delta: 0.002}}")
    _no_unknown(doc, DETECTOR_FIELDS, "monitoring.concept_drift")
    name = doc.get("detector", "adwin")
    if name not in DETECTORS:
        raise ValueError(f"monitoring.concept_drift.detector {name!r} is not one of {sorted(DETECTORS)}")
    params = doc.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValueError("monitoring.concept_drift.params must be a mapping of parameter names to values")
    spec = DetectorSpec(name, tuple(sorted(params.items())))
    try:
        spec.build()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"monitoring.concept_drift: {name} does not take {params}: {exc}") from exc
    return spec


def _window(doc: Any, where: str, default: WindowSpec) -> WindowSpec:
    if doc is None:
        return default
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping like {{window: 1000, psi_threshold: 0.2}}")
    _no_unknown(doc, WINDOW_FIELDS, where)
    threshold = doc.get("psi_threshold", default.psi_threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        raise ValueError(f"{where}.psi_threshold must be a positive number, not {threshold!r}")
    warmup = doc.get("warmup", default.warmup)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"{where}.warmup must be a whole number >= 0, not {warmup!r}")
    return WindowSpec(_positive(doc.get("window", default.window), f"{where}.window"), float(threshold), warmup)


def _estimation(doc: Any) -> EstimationSpec:
    """The ``estimated_quality`` mapping (empty or null: every default).

    >>> _estimation({"window": 500, "calibration": "binning"})
    EstimationSpec(window=500, calibration_window=2000, calibration='binning', threshold=0.05)
    >>> _estimation({"threshold": 2})
    Traceback (most recent call last):
    ...
    ValueError: monitoring.estimated_quality.threshold must be a number in (0, 1), not 2
    """
    where = "monitoring.estimated_quality"
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping like {{window: 1000, threshold: 0.05}}")
    _no_unknown(doc, ESTIMATION_FIELDS, where)
    default = EstimationSpec()
    calibration = doc.get("calibration", default.calibration)
    if calibration not in CALIBRATIONS:
        raise ValueError(f"{where}.calibration {calibration!r} is not one of {list(CALIBRATIONS)}")
    threshold = doc.get("threshold", default.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise ValueError(f"{where}.threshold must be a number in (0, 1), not {threshold!r}")
    return EstimationSpec(
        window=_positive(doc.get("window", default.window), f"{where}.window"),
        calibration_window=_positive(
            doc.get("calibration_window", default.calibration_window), f"{where}.calibration_window"
        ),
        calibration=calibration,
        threshold=float(threshold),
    )


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 10:
        raise ValueError(f"{where} must be a whole number >= 10, not {value!r}")
    return value


def _no_unknown(doc: dict[str, Any], known: Iterable[str], where: str) -> None:
    problem = unknown_keys(doc, known, where)
    if problem:
        raise ValueError(problem)
