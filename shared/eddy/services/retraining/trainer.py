"""Train challengers from the champion's window, judge them on a holdout, check they can be served.

For one retrain request:

1. The window (the champion's latest labeled examples, oldest first) is split:
   the oldest ``1 - holdout`` share trains, the newest ``holdout`` share is held out.
2. Candidates: a fresh model of the champion's spec, and each of
   ``retraining.candidates`` whose features are all in the examples.
3. Each replays the training part, then predicts the held-out events; its
   answers are compared with the champion's recorded answers to the same events
   (accuracy and log loss, or MAE and RMSE, and the paired test).
4. It then learns the held-out events too (test, then train, as online learning
   does), so the challenger leaves with the freshest data, and the release
   checks run on that final artifact.
5. The best candidate that passes the release checks and is not worse than the
   champion by more than the promotion margin becomes a ``ModelCandidate``; the
   others that fail are reported as ``challenger_rejected`` model events.

Everything here is deterministic given the examples, except the latency check
(the timer is injectable for tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.topics import StreamTopics
from eddy.ml.artifacts import Signer
from eddy.ml.models import Features, build_estimator, learn, predict_batch
from eddy.ml.roles import CHALLENGER, CHALLENGER_REJECTED, SHADOW, VersionKey, model_event
from eddy.runtime.dlq import MAX_RECORD_BYTES
from eddy.services.retraining.release import ReleaseReport, check_release
from eddy.services.retraining.scoring import finite, higher_is_better, metric_name, score, summarise
from eddy.services.retraining.stats import PairedResult, paired_accuracy, paired_errors
from eddy.services.retraining.window import Example, offset_ranges

log = logging.getLogger("eddy.services.retraining")

# Fewer examples than this in the window and a request waits: a holdout of a handful says nothing.
MIN_EXAMPLES = 50
# A candidate travels as one Kafka record: its artifact must leave room under the record limit for the
# rest (metrics, spec), whatever the contract's budget allows, or the loop would dead-letter it.
ARTIFACT_LIMIT = MAX_RECORD_BYTES - 100_000
ACTOR = "retraining"


@dataclass(frozen=True)
class RetrainRequest:
    """A ``retrain_requested`` model event, from retraining's own triggers or from a user."""

    event_id: str
    stream: str
    reason: str
    actor: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class CandidateResult:
    """One candidate's evaluation: ``check`` names the check it failed, None if it passed them all."""

    spec: ModelSpec
    candidate_id: str
    estimator: Any = None
    holdout: dict[str, Any] = field(default_factory=dict)
    test: PairedResult | None = None
    release: ReleaseReport | None = None
    check: str | None = None
    why: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.spec.name,
            "candidate_id": self.candidate_id,
            "holdout": self.holdout,
            "test": self.test.to_json() if self.test else None,
            "release": self.release.to_json() if self.release else None,
            "check": self.check,
            "why": self.why,
        }


@dataclass
class TrainingOutcome:
    """What a request produced: at most one candidate record, and rejection events."""

    candidate: dict[str, Any] | None = None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    results: list[CandidateResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def candidate_id(request_id: str, model_name: str) -> str:
    """Deterministic per request and model: a request replayed builds the same candidate, registered once.

    >>> candidate_id("r1", "default") == candidate_id("r1", "default") != candidate_id("r2", "default")
    True
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eddy:candidate:{request_id}:{model_name}"))


class Trainer:
    """Builds, evaluates and checks challengers for one stream."""

    def __init__(
        self,
        contract: StreamContract,
        *,
        signer: Signer,
        clock: Callable[[], float] = time.time,
        schema_ids: Callable[[str], int | None] = lambda topic: None,
        code_version: str = "unknown",
        build: Callable[[ModelSpec], Any] = build_estimator,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.contract = contract
        self.signer = signer
        self.spec = contract.retraining
        self.clock = clock
        self.schema_ids = schema_ids
        self.code_version = code_version
        self.build = build
        self.timer = timer
        release = self.spec.release
        self.release = replace(release, max_artifact_bytes=min(release.max_artifact_bytes, ARTIFACT_LIMIT))

    def specs(self, champion: VersionKey) -> list[ModelSpec]:
        """The champion's spec first, then the contract's other candidates, each once."""
        names = [champion.name, *self.spec.candidates]
        specs: list[ModelSpec] = []
        for name in dict.fromkeys(names):
            try:
                specs.append(self.contract.model(name))
            except KeyError:
                log.warning("no contract model to retrain", extra={"stream": self.contract.name, "model": name})
        return specs

    def train(self, request: RetrainRequest, champion: VersionKey, window: Sequence[Example]) -> TrainingOutcome:
        """Answer ``request`` from ``window`` (the champion's examples, oldest first)."""
        outcome = TrainingOutcome()
        examples = [e for e in window if e.label is not None]
        held = max(1, round(len(examples) * self.spec.holdout))
        train, holdout = examples[: len(examples) - held], examples[len(examples) - held :]
        if not train:
            outcome.skipped["*"] = f"only {len(examples)} labeled examples"
            return outcome
        champion_scores = [score(self.contract.task, e.prediction, e.label) for e in holdout]
        champion_holdout = summarise(
            self.contract.task,
            [e.prediction for e in holdout],
            [e.label for e in holdout],
            [e.probabilities for e in holdout],
        )
        for spec in self.specs(champion):
            missing = sorted({f for f in spec.features for e in examples if f not in e.features})
            if missing:
                why = f"features {missing} are not in the champion's labeled examples"
                outcome.skipped[spec.name] = why
                log.info("candidate skipped", extra={"stream": self.contract.name, "model": spec.name, "why": why})
                continue
            result = self._evaluate(request, spec, train, holdout, champion_scores, champion_holdout)
            outcome.results.append(result)
        passing = [r for r in outcome.results if r.check is None]
        best = self._best(passing)
        for result in outcome.results:
            if result.check is not None:
                outcome.rejected.append(self._rejection(request, champion, result, champion_holdout))
        if best is not None:
            outcome.candidate = self._candidate(request, champion, best, outcome, train, holdout, champion_holdout)
        return outcome

    # -- one candidate ---------------------------------------------------------------

    def _evaluate(
        self,
        request: RetrainRequest,
        spec: ModelSpec,
        train: Sequence[Example],
        holdout: Sequence[Example],
        champion_scores: list[float],
        champion_holdout: dict[str, Any],
    ) -> CandidateResult:
        task = self.contract.task
        result = CandidateResult(spec, candidate_id(request.event_id, spec.name))
        try:
            estimator = self.build(spec)
            for e in train:
                learn(estimator, _x(spec, e), e.label)
            rows = [_x(spec, e) for e in holdout]
            answers = predict_batch(estimator, task, rows)
        except Exception as exc:
            result.check, result.why = "training", f"{type(exc).__name__}: {exc}"[:300]
            return result
        labels = [e.label for e in holdout]
        predictions = [p for p, _ in answers]
        result.holdout = summarise(task, predictions, labels, [probs for _, probs in answers])
        mine = [score(task, p, y) for p, y in zip(predictions, labels, strict=True)]
        if higher_is_better(task):
            result.test = paired_accuracy([s > 0 for s in champion_scores], [s > 0 for s in mine], "greater")
        else:
            result.test = paired_errors(champion_scores, mine, "greater")
        # Test, then train: the challenger leaves with the newest examples learned too.
        try:
            for e, x in zip(holdout, rows, strict=True):
                learn(estimator, x, e.label)
        except Exception as exc:
            result.check, result.why = "training", f"{type(exc).__name__}: {exc}"[:300]
            return result
        result.estimator = estimator
        result.release = check_release(estimator, task, rows, self.release, self.signer, self.timer)
        if not result.release.passed:
            result.check = "release:" + ",".join(result.release.failed)
            result.why = f"release checks failed: {', '.join(result.release.failed)}"
            return result
        if not self._not_worse(result.holdout, champion_holdout):
            name = metric_name(task)
            result.check = "holdout"
            result.why = (
                f"{name} {result.holdout.get(name)} on the holdout is worse than the champion's "
                f"{champion_holdout.get(name)} by more than the margin {self.spec.promotion.margin}"
            )
        return result

    def _not_worse(self, mine: dict[str, Any], champion: dict[str, Any]) -> bool:
        margin = self.spec.promotion.margin
        if self.contract.task == "regression":
            return float(mine["mae"]) <= float(champion["mae"]) * (1 + margin) + 1e-12
        return float(mine["accuracy"]) >= float(champion["accuracy"]) - margin - 1e-12

    def _best(self, passing: list[CandidateResult]) -> CandidateResult | None:
        if not passing:
            return None
        name = metric_name(self.contract.task)
        sign = 1.0 if higher_is_better(self.contract.task) else -1.0
        # max() keeps the first of equals: the champion's own spec wins ties.
        return max(passing, key=lambda r: sign * float(r.holdout[name]))

    # -- records out ------------------------------------------------------------------

    def _candidate(
        self,
        request: RetrainRequest,
        champion: VersionKey,
        best: CandidateResult,
        outcome: TrainingOutcome,
        train: Sequence[Example],
        holdout: Sequence[Example],
        champion_holdout: dict[str, Any],
    ) -> dict[str, Any]:
        assert best.release is not None and best.test is not None
        artifact = best.release.artifact
        labeled = StreamTopics(self.contract.name).labeled
        schema_id = self.schema_ids(labeled)
        learned = [*train, *holdout]
        metrics = {
            "request": request.event_id,
            "reason": request.reason,
            "champion": str(champion),
            "training": {
                "count": len(train),
                "holdout": len(holdout),
                "learned": len(learned),
                "train_offsets": offset_ranges(train),
                "holdout_offsets": offset_ranges(holdout),
            },
            "holdout": {"candidate": best.holdout, "champion": champion_holdout, "test": best.test.to_json()},
            "release": best.release.to_json(),
            "candidates": [r.summary() for r in outcome.results],
            "skipped": outcome.skipped,
        }
        return {
            "candidate_id": best.candidate_id,
            "stream": self.contract.name,
            "model_name": best.spec.name,
            "parent_version": champion.version,
            "spec": best.spec.to_json(),
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact).hexdigest(),
            # The registry unpickles a candidate only if this verifies; the release check signed it.
            "signature": best.release.signature,
            "learned_count": len(learned),
            "training_offsets": offset_ranges(learned),
            "schema_ids": {labeled: schema_id} if schema_id is not None else {},
            "metrics": _json(metrics),
            "alias": CHALLENGER if self.spec.canary > 0 else SHADOW,
            "code_version": self.code_version,
            "created_by": ACTOR,
            "created_at_ms": int(self.clock() * 1000),
            "reason": request.reason,
        }

    def _rejection(
        self, request: RetrainRequest, champion: VersionKey, result: CandidateResult, champion_holdout: dict[str, Any]
    ) -> dict[str, Any]:
        details = {
            "reason": result.why,
            "check": result.check,
            "request": request.event_id,
            "request_reason": request.reason,
            "candidate_id": result.candidate_id,
            "parent": str(champion),
            "evidence": {
                "holdout": {"candidate": result.holdout, "champion": champion_holdout},
                "test": result.test.to_json() if result.test else None,
                "release": result.release.to_json() if result.release else None,
            },
        }
        return model_event(
            self.contract.name,
            VersionKey(result.spec.name, 0),  # never registered: no version
            CHALLENGER_REJECTED,
            ACTOR,
            finite(details),
            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"eddy:rejected:{result.candidate_id}")),
            at_ms=int(self.clock() * 1000),
        )


def _x(spec: ModelSpec, example: Example) -> Features:
    """The candidate's features, exactly as the champion was given them."""
    return {name: example.features.get(name) for name in spec.features}


def _json(value: Any) -> str:
    return json.dumps(finite(value), sort_keys=True, default=str)
