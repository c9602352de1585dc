"""The retraining service's pure handler: labeled examples, alerts and model events in; requests out.

One :class:`Retraining` handler takes batches of decoded records from
``S.labeled``, ``S.alerts`` and ``eddy.model-events`` (``record.topic`` says
which) and keeps, per stream:

- the alias table (the registry's latest event; the contract's models at
  version 1 until it speaks);
- a window of each active version's latest labeled examples (window.py);
- the triggers (triggers.py), which ask for retrains on ``eddy.model-events``;
- the trainer (trainer.py), which answers every ``retrain_requested`` event,
  whoever asked, with a challenger on ``eddy.model-candidates`` or
  ``challenger_rejected`` events: at once from the champion's window, or, for
  a concept-drift request, once a whole window has been labeled since it;
- the trials (trials.py), which ask the registry to promote, archive or roll back.

It never raises on a bad record (the record is dead-lettered) and, given the same
records in the same order and the same clock, answers the same: every event id
is derived from what caused it, so a replay from the beginning of the topics
(how the service rebuilds its state) repeats ids the registry has seen already.
:meth:`Retraining.prime` with the history of ``eddy.model-events`` lets it skip
what it already published and the requests already answered.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC
from eddy.ml.artifacts import Signer
from eddy.ml.models import build_estimator
from eddy.ml.roles import (
    ARCHIVED,
    CHALLENGER_REJECTED,
    PROMOTED,
    REGISTERED,
    REQUEST_REFUSED,
    RETRAIN_REQUESTED,
    StreamRoles,
    VersionKey,
    contract_roles,
    event_details,
    roles_of_event,
)
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.retraining import metrics
from eddy.services.retraining.trainer import MIN_EXAMPLES, RetrainRequest, Trainer, candidate_id
from eddy.services.retraining.trials import Trials
from eddy.services.retraining.triggers import BUSY, REPLAYING, Triggers
from eddy.services.retraining.window import Example, Window

log = logging.getLogger("eddy.services.retraining")

STAGE = "retraining"
# Requests whose challenger learns only from examples labeled after the request: the alert says the
# concept changed, and a window half of the old concept would teach a challenger the old one again.
FRESH_REASONS = {"concept_drift"}
# Request ids remembered as handled per stream: far more than a stream asks for between restarts.
HANDLED_REQUESTS = 10_000


@dataclass
class StreamState:
    """What retraining knows about one stream."""

    contract: StreamContract
    roles: StreamRoles
    triggers: Triggers
    trials: Trials
    trainer: Trainer
    windows: dict[VersionKey, Window] = field(default_factory=dict)
    pending: RetrainRequest | None = None
    pending_since: int = 0  # champion examples seen when the pending request came
    # Candidates published and not registered yet: champion examples seen when each was published.
    awaiting: dict[str, int] = field(default_factory=dict)
    champion_seen: int = 0
    handled: OrderedDict[str, None] = field(default_factory=OrderedDict)

    @property
    def busy(self) -> bool:
        """A challenger on trial or on its way to the registry: another one now would only compete with it."""
        return self.trials.shadow is not None or bool(self.awaiting)

    def window(self, key: VersionKey) -> Window:
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = Window(self.contract.retraining.train_window)
        return window

    def handle_once(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen."""
        if event_id in self.handled:
            return False
        self.handled[event_id] = None
        while len(self.handled) > HANDLED_REQUESTS:
            self.handled.popitem(last=False)
        return True


class Retraining:
    """The handler: ``handler(records) -> BatchResult``.

    Parameters
    ----------
    contracts
        The streams served, by name.
    clock
        Wall-clock seconds: the schedule trigger and every ``at_ms``.
    schema_ids
        The schema registry id of a topic's value schema, or None (a candidate's lineage).
    code_version
        Recorded on every candidate.
    build, timer
        How a spec becomes an estimator and how prediction latency is timed (for tests).
    replay_lag_s
        Records older than this (by their Kafka timestamp) are history being re-read after a
        restart: they rebuild the windows, roles and trials, but neither fire the quality and
        schedule triggers nor train (a pending request is trained once caught up). None (the default,
        for callers whose records carry no real timestamps): every record is live.
    """

    def __init__(
        self,
        contracts: Mapping[str, StreamContract],
        *,
        signer: Signer,
        clock: Callable[[], float] = time.time,
        schema_ids: Callable[[str], int | None] = lambda topic: None,
        code_version: str = "unknown",
        build: Callable[[ModelSpec], Any] = build_estimator,
        timer: Callable[[], float] = time.perf_counter,
        replay_lag_s: float | None = None,
    ) -> None:
        self.contracts = dict(contracts)
        self.clock = clock
        self.replay_lag_s = replay_lag_s
        self.streams: dict[str, StreamState] = {}
        for name, contract in self.contracts.items():
            spec = contract.retraining
            self.streams[name] = StreamState(
                contract,
                contract_roles(contract),
                Triggers(contract, clock),
                Trials(name, contract.task, spec.promotion, lambda: self.clock() * 1000),
                Trainer(
                    contract,
                    signer=signer,
                    clock=clock,
                    schema_ids=schema_ids,
                    code_version=code_version,
                    build=build,
                    timer=timer,
                ),
            )
        # From prime(): ids already on eddy.model-events, candidates already registered, requests answered.
        self._published: set[str] = set()
        self._registered: set[str] = set()
        self._answered: set[str] = set()

    # -- restart -------------------------------------------------------------------------------

    def prime(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Learn from the history of ``eddy.model-events`` what was published and answered before a restart.

        A replay re-derives the same requests and decisions; those already on the topic are not
        published again, and a retrain request already answered (its candidate registered, or
        its candidates rejected) is not trained again.
        """
        requests: dict[str, str] = {}
        for event in events:
            event_id = str(event.get("event_id", ""))
            self._published.add(event_id)
            details = event_details(event)
            kind = event.get("event_type")
            if kind == RETRAIN_REQUESTED:
                requests[event_id] = str(event.get("stream", ""))
            elif kind == REGISTERED and details.get("candidate_id"):
                self._registered.add(str(details["candidate_id"]))
            elif kind == CHALLENGER_REJECTED and details.get("request"):
                self._answered.add(str(details["request"]))
        for request, stream in requests.items():
            contract = self.contracts.get(stream)
            if contract is None:
                continue
            if any(candidate_id(request, m.name) in self._registered for m in contract.models):
                self._answered.add(request)
        log.info(
            "primed from model events",
            extra={"events": len(self._published), "answered_requests": len(self._answered)},
        )

    # -- the handler -----------------------------------------------------------------------------

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            try:
                result.outputs.extend(self._one(record))
            except Exception as exc:
                log.warning("record failed", exc_info=True, extra={"topic": record.topic, "offset": record.offset})
                result.dead.append(record.dead(STAGE, "handler_error", exc, f"{type(exc).__name__}: {exc}"))
        return result

    def _one(self, record: InRecord) -> list[OutRecord]:
        value = record.value
        if record.topic == MODEL_EVENTS_TOPIC:
            state = self.streams.get(str(value.get("stream")))
            return self._model_event(state, value, record) if state else []
        if record.topic.endswith(".labeled"):
            state = self.streams.get(record.stream)
            return self._labeled(state, record) if state else []
        if record.topic.endswith(".alerts"):
            state = self.streams.get(str(value.get("stream")))
            if state is None:
                return []
            # Alerts fire during a replay too: their requests have the ids they had, and prime() knows those.
            request = state.triggers.on_alert(value, state.roles, BUSY if state.busy else None)
            return self._requested(state, request, record)
        raise ValueError(f"retraining does not read {record.topic!r}")

    # -- labeled examples ----------------------------------------------------------------------------

    def _labeled(self, state: StreamState, record: InRecord) -> list[OutRecord]:
        value = record.value
        key = VersionKey(str(value["model_name"]), int(value["model_version"]))
        if state.roles.alias_of(key) == ARCHIVED:
            return []
        example = Example.of(value, record.topic, record.partition, record.offset)
        if not state.window(key).add(example):
            return []  # a replayed example counts once
        out = [o for e in state.trials.on_example(key, example) for o in self._event_out(state, e, record)]
        champion = state.roles.champion
        if key == champion:
            state.champion_seen += 1
            self._expire_awaiting(state)
            metrics.WINDOW.labels(state.contract.name).set(len(state.window(champion)))
            quiet = BUSY if state.busy else None if self._live(record) else REPLAYING
            out += self._requested(state, state.triggers.on_champion_example(example, champion, quiet), record)
            out += self._requested(state, state.triggers.tick(quiet, champion), record)
            out += self._maybe_train(state, record)
        return out

    def _expire_awaiting(self, state: StreamState) -> None:
        # A candidate the registry never registered (it was down, or refused it) must not block retraining forever.
        limit = 2 * state.contract.retraining.train_window
        for cid, seen in list(state.awaiting.items()):
            if state.champion_seen - seen > limit:
                log.warning("candidate never registered", extra={"stream": state.contract.name, "candidate": cid})
                del state.awaiting[cid]

    # -- model events ---------------------------------------------------------------------------------

    def _model_event(self, state: StreamState, event: Mapping[str, Any], record: InRecord) -> list[OutRecord]:
        roles = roles_of_event(event)
        if roles is not None:
            self._apply_roles(state, roles)
        kind = event.get("event_type")
        details = event_details(event)
        decided: list[dict[str, Any]] = []  # by the examples read before the event that opened a trial
        if kind == REGISTERED and roles is not None and details.get("candidate_id"):
            state.awaiting.pop(str(details["candidate_id"]), None)
            decided = state.trials.open_shadow(event, roles)
        elif kind == PROMOTED and roles is not None and details.get("previous"):
            previous = VersionKey.parse(str(details["previous"]))
            labels = details.get("probation_labels")
            if not isinstance(labels, int) or isinstance(labels, bool) or labels < 1:
                labels = state.contract.retraining.promotion.rollback_labels
            decided = state.trials.open_probation(event, previous, roles, labels)
        elif kind == REQUEST_REFUSED and details.get("request"):
            state.trials.refused(str(details["request"]))
            log.info("request refused", extra={"stream": state.contract.name, "why": details.get("reason")})
        elif kind == RETRAIN_REQUESTED:
            # Anyone's request (a user's through the registry, or ours read back): acted on once.
            return self._accept(state, event, record, publish=False)
        out = [o for e in decided for o in self._event_out(state, e, record)]
        return out + self._maybe_train(state, record)

    def _apply_roles(self, state: StreamState, roles: StreamRoles) -> None:
        before = state.roles
        state.roles = roles
        if before.champion != roles.champion:
            state.triggers.champion_changed()
        for key, alias in roles.aliases.items():
            if alias == ARCHIVED:
                state.windows.pop(key, None)
        state.trials.roles_changed(roles)

    # -- requests and training ------------------------------------------------------------------------

    def _requested(self, state: StreamState, event: dict[str, Any] | None, record: InRecord) -> list[OutRecord]:
        return self._accept(state, event, record, publish=True) if event is not None else []

    def _accept(self, state: StreamState, event: Mapping[str, Any], record: InRecord, publish: bool) -> list[OutRecord]:
        event_id = str(event["event_id"])
        if not state.handle_once(event_id):
            return []
        details = event_details(event)
        reason = str(details.get("reason") or "unspecified")
        actor = str(event.get("actor", ""))
        metrics.REQUESTS.labels(state.contract.name, reason).inc()
        state.triggers.retrained(int(event.get("at_ms") or 0) / 1000)
        log.info("retrain requested", extra={"stream": state.contract.name, "reason": reason, "actor": actor})
        out: list[OutRecord] = []
        if publish:
            out += self._event_out(state, dict(event), record)
        if event_id in self._answered:
            return out
        state.pending = RetrainRequest(event_id, state.contract.name, reason, actor, details)
        state.pending_since = state.champion_seen
        return out + self._maybe_train(state, record)

    def _maybe_train(self, state: StreamState, record: InRecord) -> list[OutRecord]:
        request = state.pending
        if request is None or state.busy or not self._live(record):
            return []
        champion = state.roles.champion
        window = state.windows.get(champion)
        size = state.contract.retraining.train_window
        if window is None or len(window) < min(MIN_EXAMPLES, size):
            return []  # waits for examples: a request read before the data (a replay) is served once they come
        if request.reason in FRESH_REASONS and state.champion_seen - state.pending_since < size:
            return []  # the concept changed: learn it from a window of examples all labeled since
        state.pending = None
        started = time.perf_counter()
        outcome = state.trainer.train(request, champion, window.examples())
        metrics.TRAINING_SECONDS.labels(state.contract.name).observe(time.perf_counter() - started)
        out: list[OutRecord] = []
        for rejection in outcome.rejected:
            details = event_details(rejection)
            metrics.REJECTED.labels(state.contract.name, str(details.get("check"))).inc()
            out += self._event_out(state, rejection, record)
        candidate = outcome.candidate
        if candidate is not None:
            cid = candidate["candidate_id"]
            metrics.CANDIDATES.labels(state.contract.name, candidate["model_name"]).inc()
            log.info(
                "candidate built",
                extra={"stream": state.contract.name, "model": candidate["model_name"], "candidate": cid},
            )
            if cid not in self._registered:
                state.awaiting[cid] = state.champion_seen
                out.append(OutRecord(MODEL_CANDIDATES_TOPIC, state.contract.name, candidate, source=record))
        elif not outcome.rejected:
            log.warning(
                "no candidate could be trained",
                extra={"stream": state.contract.name, "request": request.event_id, "skipped": outcome.skipped},
            )
        return out

    def _live(self, record: InRecord) -> bool:
        if self.replay_lag_s is None:
            return True
        return record.timestamp_ms >= (self.clock() - self.replay_lag_s) * 1000

    def _event_out(self, state: StreamState, event: dict[str, Any], record: InRecord) -> list[OutRecord]:
        if event["event_id"] in self._published:
            return []  # on the topic already, from before a restart
        return [OutRecord(MODEL_EVENTS_TOPIC, state.contract.name, event, source=record)]


# The name the first version of this service had; its tests and callers still use it.
RequestRetrain = Retraining
