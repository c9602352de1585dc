"""When to ask for a retrain: alerts, the schedule, the champion's windowed quality.

Each trigger that fires produces a ``retrain_requested`` model event (actor
``retraining``) whose id is a function of what caused it, so the same cause
read again after a restart asks with the same id and is acted on once:

- a monitoring alert (``concept_drift``, ``estimated_quality`` or ``quality``, firing): the alert's id
  and time (``retraining.triggers.drift``);
- the schedule (``retraining.triggers.schedule``): the stream and the period's
  slot of wall-clock time;
- the quality threshold (``retraining.triggers.quality``): the champion and the
  labeled example that crossed it.

After any retrain, ``retraining.cooldown`` labeled examples of the champion
must arrive before a trigger counts again; triggers are also quiet while a
challenger is on trial (its outcome is the answer).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.ml.roles import ARCHIVED, RETRAIN_REQUESTED, StreamRoles, VersionKey, model_event
from eddy.services.retraining import metrics
from eddy.services.retraining.scoring import score
from eddy.services.retraining.window import Example, offset_ranges

log = logging.getLogger("eddy.services.retraining")

# Kinds of alert that mean the model, not the data pipeline, is the problem.
RETRAIN_KINDS = {"concept_drift", "estimated_quality", "quality"}
# Kinds whose subject is the model (its version in the details); the others are about the stream's champion.
MODEL_SUBJECT_KINDS = {"concept_drift", "estimated_quality"}
ACTOR = "retraining"
# Alerts remembered as handled: a replay re-reads each once, so this only has to outlast a batch or two.
HANDLED_ALERTS = 10_000
# Why the handler keeps the triggers quiet: a challenger on trial (its outcome is the answer), or history
# being re-read after a restart (what it would trigger was triggered, or not, back then).
BUSY, REPLAYING = "trial_under_way", "replaying"


def request_id(*parts: object) -> str:
    """A deterministic event id from what caused a request.

    >>> request_id("demo", "schedule", 7) == request_id("demo", "schedule", 7)
    True
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(str(p) for p in parts)))


class Triggers:
    """One stream's triggers: each answers a ``retrain_requested`` event or None.

    ``quiet``, given by the caller, is why no trigger may fire now (:data:`BUSY`, :data:`REPLAYING`) or None.
    """

    def __init__(self, contract: StreamContract, clock: Callable[[], float]) -> None:
        self.contract = contract
        self.spec = contract.retraining
        self.clock = clock
        # Champion examples since the last retrain; None until there has been one (no cooldown yet).
        self.since_retrain: int | None = None
        self.started_s: float | None = None
        self.last_retrain_s: float | None = None
        window = self.spec.quality.window if self.spec.quality else 1
        self.quality: deque[tuple[float, Example]] = deque(maxlen=window)
        self._quality_sum = self._quality_squares = 0.0
        self._alerts: OrderedDict[tuple[str, int], None] = OrderedDict()

    # -- bookkeeping ---------------------------------------------------------------------

    def retrained(self, at_s: float) -> None:
        """A retrain was requested (by anyone): start the cooldown and the schedule's period again."""
        self.since_retrain = 0
        self.last_retrain_s = at_s if self.last_retrain_s is None else max(self.last_retrain_s, at_s)
        self._clear_quality()

    def champion_changed(self) -> None:
        """The windowed quality is the champion's: a new one starts from nothing."""
        self._clear_quality()

    @property
    def cooling(self) -> bool:
        return self.since_retrain is not None and self.since_retrain < self.spec.cooldown

    def _clear_quality(self) -> None:
        self.quality.clear()
        self._quality_sum = self._quality_squares = 0.0

    # -- triggers ----------------------------------------------------------------------------

    def on_alert(self, alert: Mapping[str, Any], roles: StreamRoles, quiet: str | None) -> dict[str, Any] | None:
        """A retrain request for a firing concept-drift, estimated-quality or quality alert about the champion, once."""
        metrics.ALERTS.labels(alert["stream"], alert["kind"], alert["status"]).inc()
        if alert["status"] != "firing" or alert["kind"] not in RETRAIN_KINDS:
            return None
        identity = (str(alert["alert_id"]), int(alert["raised_at_ms"]))
        if identity in self._alerts:
            return None
        self._alerts[identity] = None
        while len(self._alerts) > HANDLED_ALERTS:
            self._alerts.popitem(last=False)
        details = _json_object(alert.get("details"))
        subject = str(alert["subject"]) if alert["kind"] in MODEL_SUBJECT_KINDS else roles.champion.name
        version = int(details.get("model_version", 0) or 0)
        about = VersionKey(subject, version)
        # An alert about a challenger or shadow is not the champion's problem; an unknown version may be
        # (the registry's table may not have reached us yet).
        if about in roles.aliases and about != roles.champion and roles.aliases[about] != ARCHIVED:
            return self._suppressed(alert["kind"], "not_champion")
        if about in roles.aliases and roles.aliases[about] == ARCHIVED:
            return self._suppressed(alert["kind"], "archived")
        if not self.spec.drift_trigger:
            return self._suppressed(alert["kind"], "drift_trigger_off")
        if why := self._quiet(quiet):
            return self._suppressed(alert["kind"], why)
        evidence = {
            "topic": alert["source_topic"],
            "partition": alert.get("source_partition", -1),
            "first_offset": alert["first_offset"],
            "last_offset": alert["last_offset"],
            "offsets": alert.get("offsets", []),
        }
        extra = {"alert_id": alert["alert_id"], "statistic": alert["statistic"], "value": alert["value"]}
        return self._request(about, str(alert["kind"]), evidence, request_id(f"{identity[0]}@{identity[1]}"), extra)

    def on_champion_example(self, example: Example, champion: VersionKey, quiet: str | None) -> dict[str, Any] | None:
        """Count a new labeled example of the champion; a request when its windowed quality crosses the threshold."""
        if self.since_retrain is not None:
            self.since_retrain += 1
        quality = self.spec.quality
        if quality is None or not example.served:
            return None
        value = score(self.contract.task, example.prediction, example.label)
        if len(self.quality) == self.quality.maxlen:
            oldest = self.quality[0][0]
            self._quality_sum -= oldest
            self._quality_squares -= oldest * oldest
        self.quality.append((value, example))
        self._quality_sum += value
        self._quality_squares += value * value
        # Judged only over a full window: a handful of early examples says nothing.
        if len(self.quality) < quality.window:
            return None
        n = len(self.quality)
        mean = math.sqrt(max(0.0, self._quality_squares) / n) if quality.metric == "rmse" else self._quality_sum / n
        if not quality.crossed(mean):
            return None
        if why := self._quiet(quiet):
            return self._suppressed("quality_threshold", why)
        evidence = {
            "metric": quality.metric,
            "value": round(mean, 6),
            "threshold": quality.threshold,
            "window": len(self.quality),
            "offsets": offset_ranges([e for _, e in self.quality]),
        }
        event_id = request_id(self.contract.name, "quality", champion, example.event_id)
        return self._request(champion, "quality_threshold", evidence, event_id)

    def tick(self, quiet: str | None, champion: VersionKey | None = None) -> dict[str, Any] | None:
        """A request when the schedule's period has passed since the last retrain (or since start)."""
        now = self.clock()
        if self.started_s is None:
            self.started_s = now
        period = self.spec.schedule_s
        if not period or champion is None:
            return None
        since = self.last_retrain_s if self.last_retrain_s is not None else self.started_s
        if now - since < period:
            return None
        if quiet == REPLAYING:
            return None  # history being re-read: due once caught up
        if why := self._quiet(quiet):
            # Not due again until a period from now: one suppression, not one per record.
            self.last_retrain_s = now
            return self._suppressed("schedule", why)
        slot = int(now // period)
        evidence = {"period_s": period, "slot": slot, "since_ms": int(since * 1000)}
        return self._request(champion, "schedule", evidence, request_id(self.contract.name, "schedule", slot))

    # -- helpers ---------------------------------------------------------------------------

    def _quiet(self, quiet: str | None) -> str | None:
        if quiet:
            return quiet
        if self.cooling:
            return "cooldown"
        return None

    def _suppressed(self, reason: str, why: str) -> dict[str, Any] | None:
        metrics.SUPPRESSED.labels(self.contract.name, reason, why).inc()
        log.info("retrain trigger suppressed", extra={"stream": self.contract.name, "reason": reason, "why": why})
        return None

    def _request(
        self,
        about: VersionKey,
        reason: str,
        evidence: dict[str, Any],
        event_id: str,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        details = {"reason": reason, **(extra or {}), "evidence": evidence}
        return model_event(
            self.contract.name,
            about,
            RETRAIN_REQUESTED,
            ACTOR,
            details,
            event_id=event_id,
            at_ms=int(self.clock() * 1000),
        )


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
