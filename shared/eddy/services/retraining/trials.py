"""The promotion judge: paired trials between the champion and one other version.

Every active version predicts every event and is labeled, so the champion's
labeled example and the other version's pair up by event id. A trial asks one
question of those pairs: *is the contender better than the champion by at
least the margin, significantly?*

- **Shadow trial** (contender: a retrained challenger, opened by its
  ``registered`` event). At ``promotion.shadow_labels`` pairs: yes → request its
  promotion; no → request its archiving.
- **Probation** (contender: the previous champion, opened by a ``promoted``
  event naming it). The new champion stays unless the previous one beats it:
  checked every :data:`CHECK_EVERY` pairs with ``alpha / checkpoints`` (so a
  disastrous promotion is undone within 50 labels while repeated looks do not
  inflate false alarms) and at ``promotion.rollback_labels`` pairs with
  ``alpha``; yes → request a rollback; survived → request archiving the
  previous champion (it stops consuming resources).

Classification compares accuracy (McNemar's test), regression the mean
absolute error (paired t-test) with a relative margin: the contender must have
``MAE <= champion MAE * (1 - margin)``.

Each decision is a request to the registry plus a ``trial_result`` event with
the evidence, with ids derived from the event that opened the trial, so a
replay asks again with the same ids and the registry applies them once.
A trial ends when its versions change alias (archived, champion replaced) or
the registry refuses its request.

A trial pairs every example predicted since it opened, whether its label was read before or after the
event that opened it: the last :data:`RECENT_EXAMPLES` labeled examples of the stream are kept and given
to a trial when it opens. Live, labels of events predicted after a registration can be read before it;
in a replay after a restart, ``S.labeled`` is often read thousands of records ahead of
``eddy.model-events``, and a trial that took only the examples read after it judged later labels than
the live one did (the lifecycle test saw a challenger archived that live had promoted).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.retraining import PromotionPolicy
from eddy.ml.roles import (
    ARCHIVE_REQUESTED,
    ARCHIVED,
    PROMOTION_REQUESTED,
    ROLLBACK_REQUESTED,
    TRIAL_RESULT,
    StreamRoles,
    VersionKey,
    model_event,
)
from eddy.services.retraining import metrics
from eddy.services.retraining.scoring import finite, higher_is_better, metric_name, score
from eddy.services.retraining.stats import PairedResult, paired_accuracy, paired_errors
from eddy.services.retraining.window import Example

log = logging.getLogger("eddy.services.retraining")

SHADOW_TRIAL, PROBATION = "shadow", "probation"
PROMOTE, ARCHIVE, ROLLBACK, KEEP = "promote", "archive", "rollback", "keep"
CHECK_EVERY = 50
ACTOR = "retraining"
RECENT_EXAMPLES = 20_000


@dataclass
class Trial:
    """One trial's pairs: ``champion`` defends, ``contender`` must beat it."""

    kind: str
    stream: str
    task: str
    champion: VersionKey
    contender: VersionKey
    needed: int
    policy: PromotionPolicy
    opened_by: str
    since_ms: int = 0
    max_pending: int = 10_000
    pending: OrderedDict[str, tuple[VersionKey, float]] = field(default_factory=OrderedDict)
    champion_scores: list[float] = field(default_factory=list)
    contender_scores: list[float] = field(default_factory=list)
    paired: set[str] = field(default_factory=set)
    decision: str | None = None
    requests: set[str] = field(default_factory=set)

    @property
    def pairs(self) -> int:
        return len(self.champion_scores)

    @property
    def checkpoints(self) -> int:
        """How many times a probation looks at its pairs (the last at ``needed``)."""
        return max(1, math.ceil(self.needed / CHECK_EVERY))

    def add(self, key: VersionKey, example: Example) -> bool:
        """Take one labeled example of either version; True when it completed a pair."""
        if key not in (self.champion, self.contender) or self.decision is not None:
            return False
        # Only events predicted since the trial opened: a replay must not pair examples from before it.
        if example.predicted_at_ms < self.since_ms or example.event_id in self.paired:
            return False
        value = score(self.task, example.prediction, example.label)
        other = self.pending.get(example.event_id)
        if other is None or other[0] == key:
            self.pending[example.event_id] = (key, value)
            while len(self.pending) > self.max_pending:
                self.pending.popitem(last=False)
            return False
        del self.pending[example.event_id]
        self.paired.add(example.event_id)
        champion_value, contender_value = (value, other[1]) if key == self.champion else (other[1], value)
        self.champion_scores.append(champion_value)
        self.contender_scores.append(contender_value)
        return True

    def verdict(self, final: bool) -> tuple[bool, dict[str, Any]]:
        """Whether the contender is better by the margin and significantly, with the numbers."""
        name = metric_name(self.task)
        n = self.pairs
        champion_metric = sum(self.champion_scores) / n if n else 0.0
        contender_metric = sum(self.contender_scores) / n if n else 0.0
        margin = self.policy.margin
        test: PairedResult
        if higher_is_better(self.task):
            champion_right = [s > 0 for s in self.champion_scores]
            test = paired_accuracy(champion_right, [s > 0 for s in self.contender_scores], "greater")
            by_margin = contender_metric - champion_metric >= margin - 1e-12
        else:
            test = paired_errors(self.champion_scores, self.contender_scores, "greater")
            # Relative: a smaller error by the margin's share of the champion's, and smaller at all.
            bound = champion_metric * (1 - margin) + 1e-12
            by_margin = contender_metric < champion_metric and contender_metric <= bound
        alpha = self.policy.alpha if final or self.kind == SHADOW_TRIAL else self.policy.alpha / self.checkpoints
        significant = test.p_value < alpha
        evidence = {
            "kind": self.kind,
            "pairs": n,
            "needed": self.needed,
            "metric": name,
            "champion": str(self.champion),
            "contender": str(self.contender),
            "champion_metric": round(champion_metric, 6),
            "contender_metric": round(contender_metric, 6),
            "margin": margin,
            "margin_met": by_margin,
            "alpha": alpha,
            "significant": significant,
            "test": test.to_json(),
            "opened_by": self.opened_by,
        }
        return by_margin and significant, evidence


class Trials:
    """A stream's open trials (at most one of each kind), fed with labeled examples and model events."""

    def __init__(self, stream: str, task: str, policy: PromotionPolicy, clock_ms: Callable[[], float]) -> None:
        self.stream = stream
        self.task = task
        self.policy = policy
        self.clock_ms = clock_ms
        self.shadow: Trial | None = None
        self.probation: Trial | None = None
        # (version, event id) -> example, oldest first: what a trial opening now is given first.
        self.recent: OrderedDict[tuple[VersionKey, str], Example] = OrderedDict()

    @property
    def open(self) -> list[Trial]:
        return [t for t in (self.shadow, self.probation) if t is not None]

    # -- opening and closing -----------------------------------------------------------------

    def open_shadow(self, event: Mapping[str, Any], roles: StreamRoles) -> list[dict[str, Any]]:
        """A retrained challenger was registered: pair it with the champion; the events of a decision the
        examples already read complete."""
        key = VersionKey(event["model_name"], int(event["model_version"]))
        alias = roles.alias_of(key)
        if alias in (None, ARCHIVED) or key == roles.champion:
            return []
        if self.shadow is not None and self.shadow.contender != key:
            log.info("shadow trial replaced", extra={"stream": self.stream, "was": str(self.shadow.contender)})
        if self.shadow is not None and self.shadow.contender == key:
            return []
        self.shadow = self._trial(SHADOW_TRIAL, roles.champion, key, self.policy.shadow_labels, event)
        return self._catch_up(self.shadow)

    def open_probation(
        self, event: Mapping[str, Any], previous: VersionKey, roles: StreamRoles, labels: int
    ) -> list[dict[str, Any]]:
        """A new champion: on probation against the previous one, which the registry keeps as a shadow."""
        champion = VersionKey(event["model_name"], int(event["model_version"]))
        if roles.champion != champion or roles.alias_of(previous) in (None, ARCHIVED):
            return []
        self.probation = self._trial(PROBATION, champion, previous, labels, event)
        return self._catch_up(self.probation)

    def _catch_up(self, trial: Trial) -> list[dict[str, Any]]:
        """Give a new trial the recent examples of its two versions, in the order they were read."""
        events: list[dict[str, Any]] = []
        for (key, _), example in list(self.recent.items()):
            if trial.decision is not None:
                break
            if trial.add(key, example):
                metrics.TRIAL_PAIRS.labels(self.stream, trial.kind).set(trial.pairs)
                events += self._judge(trial)
        return events

    def _trial(self, kind: str, champion: VersionKey, contender: VersionKey, needed: int, event: Any) -> Trial:
        log.info(
            "trial opened",
            extra={"stream": self.stream, "kind": kind, "champion": str(champion), "contender": str(contender)},
        )
        return Trial(
            kind,
            self.stream,
            self.task,
            champion,
            contender,
            needed,
            self.policy,
            str(event["event_id"]),
            int(event.get("at_ms") or 0),
            max_pending=max(1000, 4 * needed),
        )

    def roles_changed(self, roles: StreamRoles) -> None:
        """Close the trials whose versions no longer hold their places."""
        for trial in self.open:
            if roles.champion != trial.champion or roles.alias_of(trial.contender) in (None, ARCHIVED):
                self._close(trial, "aliases changed")

    def refused(self, request_id: str) -> None:
        """The registry refused one of our requests: that trial is over."""
        for trial in self.open:
            if request_id in trial.requests:
                self._close(trial, "request refused")

    def _close(self, trial: Trial, why: str) -> None:
        log.info("trial closed", extra={"stream": self.stream, "kind": trial.kind, "why": why, "pairs": trial.pairs})
        metrics.TRIAL_PAIRS.labels(self.stream, trial.kind).set(0)
        if trial is self.shadow:
            self.shadow = None
        if trial is self.probation:
            self.probation = None

    # -- judging ---------------------------------------------------------------------------------

    def on_example(self, key: VersionKey, example: Example) -> list[dict[str, Any]]:
        """Feed one labeled example to the open trials; the events of any decision it completes."""
        self.recent[(key, example.event_id)] = example
        while len(self.recent) > RECENT_EXAMPLES:
            self.recent.popitem(last=False)
        events: list[dict[str, Any]] = []
        for trial in self.open:
            if trial.add(key, example):
                metrics.TRIAL_PAIRS.labels(self.stream, trial.kind).set(trial.pairs)
                events += self._judge(trial)
        return events

    def _judge(self, trial: Trial) -> list[dict[str, Any]]:
        n = trial.pairs
        final = n >= trial.needed
        if trial.kind == SHADOW_TRIAL:
            if not final:
                return []
            better, evidence = trial.verdict(final=True)
            return self._decide(trial, PROMOTE if better else ARCHIVE, evidence)
        if not final and (n < CHECK_EVERY or n % CHECK_EVERY):
            return []
        worse, evidence = trial.verdict(final)
        if worse:
            return self._decide(trial, ROLLBACK, evidence)
        return self._decide(trial, KEEP, evidence) if final else []

    def _decide(self, trial: Trial, decision: str, evidence: dict[str, Any]) -> list[dict[str, Any]]:
        trial.decision = decision
        evidence = {**evidence, "decision": decision}
        metrics.TRIALS.labels(self.stream, trial.kind, decision).inc()
        log.info("trial decided", extra={"stream": self.stream, **{k: v for k, v in evidence.items() if k != "test"}})
        name = evidence["metric"]
        numbers = (
            f"{name} {evidence['contender_metric']} ({trial.contender}) vs {evidence['champion_metric']} "
            f"({trial.champion}) over {evidence['pairs']} paired labels, p={evidence['test']['p_value']:.3g}"
        )
        events: list[dict[str, Any]] = []
        if decision == PROMOTE:
            reason = f"shadow trial won: {numbers}"
            events.append(
                self._event(trial, trial.contender, PROMOTION_REQUESTED, reason, evidence, str(trial.champion))
            )
        elif decision == ARCHIVE:
            reason = f"shadow trial lost: {numbers}; needs +{trial.policy.margin} and p < {evidence['alpha']:.3g}"
            events.append(self._event(trial, trial.contender, ARCHIVE_REQUESTED, reason, evidence))
        elif decision == ROLLBACK:
            reason = f"probation failed: the previous champion is better, {numbers}"
            events.append(
                self._event(
                    trial, trial.champion, ROLLBACK_REQUESTED, reason, evidence, str(trial.champion), trial.contender
                )
            )
        else:
            reason = f"probation passed: {numbers}"
            events.append(self._event(trial, trial.contender, ARCHIVE_REQUESTED, reason, evidence))
        on_trial = trial.contender if trial.kind == SHADOW_TRIAL else trial.champion
        events.append(self._event(trial, on_trial, TRIAL_RESULT, reason, evidence))
        trial.requests.update(e["event_id"] for e in events)
        return events

    def _event(
        self,
        trial: Trial,
        key: VersionKey,
        event_type: str,
        reason: str,
        evidence: dict[str, Any],
        expected_champion: str | None = None,
        to: VersionKey | None = None,
    ) -> dict[str, Any]:
        details: dict[str, Any] = {"reason": reason, "evidence": evidence}
        if event_type == TRIAL_RESULT:
            details.update(kind=trial.kind, decision=evidence["decision"])
        if expected_champion is not None:
            details["expected_champion"] = expected_champion
        if to is not None:
            details["to"] = str(to)
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"eddy:trial:{trial.opened_by}:{trial.kind}:{event_type}"))
        return model_event(
            self.stream, key, event_type, ACTOR, finite(details), event_id=event_id, at_ms=int(self.clock_ms())
        )
