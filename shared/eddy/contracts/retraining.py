"""The ``retraining:`` section of a stream contract: when to retrain, and how a challenger earns promotion.

.. code-block:: yaml

    retraining:
      triggers:
        drift: true              # retrain on monitoring's concept-drift, estimated-quality and quality alerts
        schedule: 6h             # and on this period (omit for none)
        quality: {metric: accuracy, below: 0.8}   # and when the champion's windowed metric crosses this
      cooldown: 1000             # labeled examples after a retrain before another trigger counts
      train_window: 500          # the most recent labeled examples replayed into a challenger ...
      holdout: 0.3               # ... of which this share, the newest, is held out to compare with the champion
      candidates: []             # other contract models whose spec is trained too (the champion's always is)
      canary: 0.0                # share of live traffic (by hash of event_id) the challenger answers
      promotion:
        shadow_labels: 300       # N: paired labeled examples (challenger vs champion) before deciding
        margin: 0.01             # better by at least this: accuracy points, or relative error for regression
        alpha: 0.05              # significance of the paired test (McNemar, or paired differences)
        rollback_labels: 500     # M: after a promotion, roll back if worse than the previous champion
      release:
        probe: 200               # held-out events the release checks predict
        max_latency_ms: 5.0      # p99 of a single prediction
        max_artifact_bytes: 20000000

Every key is optional; the defaults are above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.durations import parse_duration_ms
from eddy.contracts.monitoring import _no_unknown
from eddy.contracts.shapes import Fields, count, duration, flag, names, number, one_of, section

QUALITY_METRICS = {"accuracy": "below", "mae": "above", "rmse": "above"}

# Each mapping's keys and what they hold: the parser refuses any other key, and eddy.contracts.contract_schema
# publishes these as the contract's JSON Schema.
QUALITY_FIELDS: Fields = {
    "metric": one_of(QUALITY_METRICS),
    "below": number(),
    "above": number(),
    "window": count(10),
}
TRIGGER_FIELDS: Fields = {
    "drift": flag(),
    "schedule": {**duration(), "type": ["integer", "string", "null"]},
    "quality": section(QUALITY_FIELDS, "retrain when the champion's windowed metric crosses a threshold"),
}
PROMOTION_FIELDS: Fields = {
    "shadow_labels": count(10),
    "margin": number(0.0, 1.0),
    "alpha": number(1e-9, 0.5),
    "rollback_labels": count(10),
}
RELEASE_FIELDS: Fields = {"probe": count(1), "max_latency_ms": number(0.0), "max_artifact_bytes": count(1)}
RETRAINING_FIELDS: Fields = {
    "triggers": section(TRIGGER_FIELDS, "what asks for a retrain"),
    "cooldown": count(0),
    "train_window": count(20),
    "holdout": number(0.05, 0.9),
    "candidates": names(),
    "canary": number(0.0, 0.5),
    "promotion": section(PROMOTION_FIELDS, "how a challenger earns promotion"),
    "release": section(RELEASE_FIELDS, "the release checks' budget"),
}


@dataclass(frozen=True)
class QualityTrigger:
    """Retrain when the champion's windowed ``metric`` is below (accuracy) or above (errors) ``threshold``."""

    metric: str
    threshold: float
    window: int = 500

    def crossed(self, value: float) -> bool:
        return value < self.threshold if QUALITY_METRICS[self.metric] == "below" else value > self.threshold


@dataclass(frozen=True)
class PromotionPolicy:
    shadow_labels: int = 300
    margin: float = 0.01
    alpha: float = 0.05
    rollback_labels: int = 500


@dataclass(frozen=True)
class ReleaseBudget:
    probe: int = 200
    max_latency_ms: float = 5.0
    max_artifact_bytes: int = 20_000_000


@dataclass(frozen=True)
class RetrainingSpec:
    drift_trigger: bool = True
    schedule_s: float | None = None
    quality: QualityTrigger | None = None
    cooldown: int = 1000
    train_window: int = 500
    holdout: float = 0.3
    candidates: tuple[str, ...] = ()
    canary: float = 0.0
    promotion: PromotionPolicy = field(default_factory=PromotionPolicy)
    release: ReleaseBudget = field(default_factory=ReleaseBudget)


def parse_retraining(doc: Any, model_names: list[str], task: str) -> RetrainingSpec:
    """The retraining spec from a contract's ``retraining:`` mapping.

    Raises
    ------
    ValueError
        Naming the key that is wrong.

    Examples
    --------
    >>> spec = parse_retraining({"canary": 0.1, "promotion": {"shadow_labels": 200}}, ["m"], "binary")
    >>> spec.canary, spec.promotion.shadow_labels, spec.promotion.rollback_labels
    (0.1, 200, 500)
    >>> parse_retraining({"candidates": ["nope"]}, ["m"], "binary")
    Traceback (most recent call last):
    ...
    ValueError: retraining.candidates: 'nope' is not a model of the contract (models: m)
    """

    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError("retraining must be a mapping")
    _no_unknown(doc, RETRAINING_FIELDS, "retraining")
    default = RetrainingSpec()
    triggers = _mapping(doc.get("triggers"), "retraining.triggers", TRIGGER_FIELDS)
    schedule = triggers.get("schedule")
    candidates = tuple(doc.get("candidates") or ())
    for name in candidates:
        if name not in model_names:
            raise ValueError(
                f"retraining.candidates: {name!r} is not a model of the contract (models: {', '.join(model_names)})"
            )
    promotion = _mapping(doc.get("promotion"), "retraining.promotion", PROMOTION_FIELDS)
    release = _mapping(doc.get("release"), "retraining.release", RELEASE_FIELDS)
    policy, budget = PromotionPolicy(), ReleaseBudget()
    return RetrainingSpec(
        drift_trigger=bool(triggers.get("drift", True)),
        schedule_s=parse_duration_ms(schedule, "retraining.triggers.schedule") / 1000 if schedule else None,
        quality=_quality(triggers.get("quality"), task),
        cooldown=_count(doc.get("cooldown", default.cooldown), "retraining.cooldown", 0),
        train_window=_count(doc.get("train_window", default.train_window), "retraining.train_window", 20),
        holdout=_share(doc.get("holdout", default.holdout), "retraining.holdout", 0.05, 0.9),
        candidates=candidates,
        canary=_share(doc.get("canary", default.canary), "retraining.canary", 0.0, 0.5),
        promotion=PromotionPolicy(
            shadow_labels=_count(promotion.get("shadow_labels", policy.shadow_labels), "promotion.shadow_labels", 10),
            margin=_share(promotion.get("margin", policy.margin), "promotion.margin", 0.0, 1.0),
            alpha=_share(promotion.get("alpha", policy.alpha), "promotion.alpha", 1e-9, 0.5),
            rollback_labels=_count(
                promotion.get("rollback_labels", policy.rollback_labels), "promotion.rollback_labels", 10
            ),
        ),
        release=ReleaseBudget(
            probe=_count(release.get("probe", budget.probe), "release.probe", 1),
            max_latency_ms=_share(release.get("max_latency_ms", budget.max_latency_ms), "release.max_latency_ms", 0.0),
            max_artifact_bytes=_count(
                release.get("max_artifact_bytes", budget.max_artifact_bytes), "release.max_artifact_bytes", 1
            ),
        ),
    )


def _quality(doc: Any, task: str) -> QualityTrigger | None:
    if doc is None:
        return None
    where = "retraining.triggers.quality"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping like {{metric: accuracy, below: 0.8}}")
    _no_unknown(doc, QUALITY_FIELDS, where)
    metric = doc.get("metric", "accuracy" if task != "regression" else "mae")
    if metric not in QUALITY_METRICS:
        raise ValueError(f"{where}.metric {metric!r} is not one of {sorted(QUALITY_METRICS)}")
    if (metric == "accuracy") == (task == "regression"):
        raise ValueError(f"{where}.metric {metric!r} does not apply to a {task} stream")
    direction = QUALITY_METRICS[metric]
    if direction not in doc:
        raise ValueError(f"{where}: {metric} needs '{direction}: <number>'")
    threshold = doc[direction]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValueError(f"{where}.{direction} must be a number, not {threshold!r}")
    return QualityTrigger(metric, float(threshold), _count(doc.get("window", 500), f"{where}.window", 10))


def _mapping(doc: Any, where: str, known: Fields) -> dict[str, Any]:
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping")
    _no_unknown(doc, known, where)
    return doc


def _count(value: Any, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{where} must be a whole number >= {least}, not {value!r}")
    return value


def _share(value: Any, where: str, low: float, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        bound = f"between {low} and {high}" if high != float("inf") else f">= {low}"
        raise ValueError(f"{where} must be a number {bound}, not {value!r}")
    return float(value)
