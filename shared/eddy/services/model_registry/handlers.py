"""The registry's decisions, free of Kafka: candidates and requests in, store writes and outputs out.

:class:`Registry` applies every change as one :meth:`Store.transaction` that
moves aliases, appends the audit row and queues the outgoing event (the outbox
is published by the composition root). :class:`RegistryHandler` adapts it to
the :class:`~eddy.runtime.loop.StreamLoop`; :class:`Lineage` records what learning
learned into each version online.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, StreamTopics
from eddy.kafka.retention import snapshot_key
from eddy.ml.artifacts import ArtifactRefused, signed_pickle, verify
from eddy.ml.models import build_estimator, spec_from_json
from eddy.ml.roles import (
    ARCHIVE_REQUESTED,
    ARCHIVED,
    ARCHIVED_EVENT,
    CHALLENGER,
    CHAMPION,
    PROMOTED,
    PROMOTION_REQUESTED,
    REGISTERED,
    REGISTRY_REQUESTS,
    REQUEST_REFUSED,
    RETRAIN_REQUESTED,
    ROLLBACK_REQUESTED,
    ROLLED_BACK,
    SHADOW,
    SYNCED,
    StreamRoles,
    VersionKey,
    event_details,
)
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.model_registry import metrics
from eddy.services.model_registry.artifacts import ArtifactError, ArtifactStore
from eddy.services.model_registry.config import ACTOR
from eddy.services.model_registry.store import Store, VersionRow

log = logging.getLogger(__name__)


class Refused(Exception):
    """A change that is not valid now: the HTTP status to answer and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CandidateError(ValueError):
    """A candidate that cannot be registered; ``reason`` is the dead letter's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Registered:
    """A newly registered version: its event and its row."""

    event: dict[str, Any]
    row: VersionRow


class Registry:
    """Registers versions and moves aliases, one transaction per decision."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        contracts: Mapping[str, StreamContract],
        code_version: str = "unknown",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.contracts = contracts
        self.code_version = code_version
        self.clock = clock
        self._revived: list[dict[str, Any]] = []
        self._revived_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------

    def contract(self, stream: str) -> StreamContract:
        contract = self.contracts.get(stream)
        if contract is None:
            raise Refused(404, f"unknown stream {stream!r}; known: {', '.join(sorted(self.contracts)) or 'none'}")
        return contract

    def roles(self, stream: str) -> StreamRoles:
        return StreamRoles(stream, self.store.aliases(stream), self.contract(stream).retraining.canary)

    def row(self, stream: str, key: VersionKey) -> VersionRow:
        row = self.store.version(stream, key)
        if row is None:
            raise Refused(404, f"stream {stream!r} has no model version {key}")
        return row

    def previous_champion(self, stream: str) -> VersionKey:
        """The default target of a rollback: the latest earlier champion that no rollback has removed.

        It may be archived (a probation that kept its successor archives it): rolling back revives it.
        """
        current, removed = self.roles(stream).champion, self.store.rolled_back_from(stream)
        for key in reversed(self.store.champion_history(stream)):
            if key != current and key not in removed:
                return key
        raise Refused(409, f"stream {stream!r} has no previous champion to roll back to (name one with `to`)")

    def take_revived(self) -> list[dict[str, Any]]:
        """Snapshots of archived versions a rollback brought back, for the caller to publish before the events.

        Inference and learning keep what they had of an archived version and resume it; the
        registered artifact is for a process that has nothing of it any more.
        """
        with self._revived_lock:
            revived, self._revived = self._revived, []
        return revived

    def snapshot_record(self, row: VersionRow) -> dict[str, Any]:
        """The ``ModelSnapshot`` of a version's registered artifact (signature and checksum verified on load)."""
        artifact = self.artifacts.get(row.sha256)
        return {
            "stream": row.stream,
            "model_name": row.name,
            "model_version": row.version,
            "learned_count": row.learned_count,
            "created_at_ms": row.created_at_ms,
            "spec": row.spec,
            "artifact": artifact,
            "sha256": row.sha256,
            # Signed afresh with the active key: the file's signature was checked by artifacts.get.
            "signature": self.artifacts.signer.sign(artifact),
            # Empty: learning and inference tell a registered artifact from their own progress by this.
            "source_offsets": {},
            "code_version": row.code_version,
            "learned_from_offsets": {},
        }

    def active_rows(self, stream: str) -> list[VersionRow]:
        aliases = self.store.aliases(stream)
        return [r for r in self.store.versions(stream) if aliases.get(r.key) not in (None, ARCHIVED)]

    # -- writing ------------------------------------------------------------------

    def _fact(
        self,
        stream: str,
        key: VersionKey,
        event_type: str,
        extra: Mapping[str, Any],
        alias: str | None = None,
        subjects: Sequence[VersionKey] = (),
        audit: bool = True,
    ) -> dict[str, Any]:
        # Read inside the transaction, after the alias changes: the event carries the table it created.
        details = {**self.roles(stream).to_details(), **extra}
        # Published as the registry's own (followers trust only its alias tables); the audit log
        # names whoever asked for the change (``by``: an API key's identity, retraining, ...).
        by = extra.get("by")
        return self.store.append_event(
            stream,
            key,
            event_type,
            ACTOR,
            details,
            alias=alias,
            subjects=subjects,
            audit=audit,
            audit_actor=str(by) if by else None,
            at_ms=self._now(),
        )

    def ensure_initial(self) -> list[dict[str, Any]]:
        """Register version 1, built from the contract spec, of every contract model that has none.

        The contract's first model is the champion and the others are shadows, as in
        :func:`eddy.ml.roles.default_roles`; a model added to a contract later joins as a shadow.
        """
        events = []
        for stream, contract in self.contracts.items():
            missing = [spec for spec in contract.models if self.store.next_version(stream, spec.name) == 1]
            if not missing:
                continue
            stored = []
            for spec in missing:
                data, _ = signed_pickle(build_estimator(spec), self.artifacts.signer)
                stored.append((spec, *self.artifacts.put(data)))  # the artifact first, then the row naming it
            with self.store.transaction():
                has_champion = CHAMPION in self.store.aliases(stream).values()
                for spec, sha, size in stored:
                    key = VersionKey(spec.name, 1)
                    alias = CHAMPION if not has_champion and spec.name == contract.champion.name else SHADOW
                    row = VersionRow(
                        stream, spec.name, 1, spec.to_json(), sha, size, ACTOR, self._now(), self.code_version,
                        reason="contract",
                    )  # fmt: skip
                    self.store.insert_version(row)
                    self.store.set_alias(stream, key, alias)
                for spec, _, _ in stored:
                    key = VersionKey(spec.name, 1)
                    extra: dict[str, Any] = {"candidate_id": None, "parent": None, "reason": "contract", "metrics": {}}
                    events.append(self._fact(stream, key, REGISTERED, extra, alias=self.store.aliases(stream)[key]))
            metrics.VERSIONS.labels(stream).inc(len(stored))
        return events

    def register_candidate(self, candidate: Mapping[str, Any]) -> Registered | None:
        """Register a retraining candidate as its model's next version; None if its id was seen before.

        Raises
        ------
        CandidateError
            For an unknown stream or model, a bad alias or spec, a signature that does not verify (the artifact
            is then never unpickled), a checksum mismatch or an unpicklable artifact.
        """
        candidate_id = candidate["candidate_id"]
        if self.store.has_candidate(candidate_id):
            return None
        stream, name = candidate["stream"], candidate["model_name"]
        contract = self.contracts.get(stream)
        if contract is None:
            raise CandidateError("unknown_stream", f"candidate {candidate_id}: unknown stream {stream!r}")
        if name not in {m.name for m in contract.models}:
            raise CandidateError("unknown_model", f"candidate {candidate_id}: stream {stream!r} has no model {name!r}")
        alias = candidate.get("alias") or SHADOW
        if alias not in (CHALLENGER, SHADOW):
            raise CandidateError("bad_alias", f"candidate {candidate_id}: alias {alias!r} (challenger or shadow)")
        artifact = candidate["artifact"]
        try:
            verify(artifact, candidate.get("signature") or "", self.artifacts.signer, "candidate")
        except ArtifactRefused as exc:
            raise CandidateError(exc.reason, f"candidate {candidate_id}: {exc}") from exc
        if hashlib.sha256(artifact).hexdigest() != candidate["sha256"]:
            raise CandidateError("checksum_mismatch", f"candidate {candidate_id}: artifact does not match its sha256")
        try:
            spec_from_json(candidate["spec"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CandidateError("bad_spec", f"candidate {candidate_id}: spec is not a model spec: {exc}") from exc
        try:
            pickle.loads(artifact)  # its signature verified above
        except Exception as exc:
            raise CandidateError("unpicklable", f"candidate {candidate_id}: artifact does not unpickle: {exc}") from exc
        sha, size = self.artifacts.put(artifact)  # before the row that names it
        parent = candidate.get("parent_version")
        with self.store.transaction():
            if self.store.has_candidate(candidate_id):  # registered meanwhile by another thread
                return None
            key = VersionKey(name, self.store.next_version(stream, name))
            demoted = self.roles(stream).challenger if alias == CHALLENGER else None
            row = VersionRow(
                stream=stream,
                name=name,
                version=key.version,
                spec=candidate["spec"],
                sha256=sha,
                size=size,
                created_by=candidate.get("created_by") or "retraining",
                created_at_ms=int(candidate.get("created_at_ms") or self._now()),
                code_version=candidate.get("code_version") or "unknown",
                parent=str(VersionKey(name, parent)) if parent is not None else None,
                training_offsets=[dict(r) for r in candidate.get("training_offsets") or []],
                learned_count=int(candidate.get("learned_count") or 0),
                schema_ids=dict(candidate.get("schema_ids") or {}),
                metrics=_json_object(candidate.get("metrics")),
                candidate_id=candidate_id,
                reason=candidate.get("reason") or "",
            )
            self.store.insert_version(row)
            if demoted is not None:
                self.store.set_alias(stream, demoted, SHADOW)
            self.store.set_alias(stream, key, alias)
            extra = {
                "candidate_id": candidate_id,
                "parent": row.parent,
                "reason": row.reason,
                "metrics": row.metrics,
                "demoted": str(demoted) if demoted else None,
            }
            subjects = [demoted] if demoted else []
            event = self._fact(stream, key, REGISTERED, extra, alias=alias, subjects=subjects)
        metrics.VERSIONS.labels(stream).inc()
        return Registered(event, row)

    def promote(
        self,
        stream: str,
        key: VersionKey,
        actor: str,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
        expected_champion: VersionKey | None = None,
        request: str | None = None,
    ) -> dict[str, Any]:
        """Make ``key`` the champion; the old champion becomes a shadow (kept loaded for probation)."""
        with self.store.transaction():
            contract = self.contract(stream)
            roles = self.roles(stream)
            self.row(stream, key)
            current = roles.champion
            if expected_champion is not None and expected_champion != current:
                raise Refused(409, f"the champion of {stream!r} is {current}, not {expected_champion}")
            self._crown(stream, roles, key, demote_to=SHADOW, revive=False)
            extra = {
                "previous": str(current),
                "reason": reason,
                "evidence": dict(evidence or {}),
                "probation_labels": contract.retraining.promotion.rollback_labels,
                "request": request,
                "by": actor,
            }
            event = self._fact(stream, key, PROMOTED, extra, alias=CHAMPION, subjects=[current])
        metrics.PROMOTIONS.labels(stream).inc()
        return event

    def rollback(
        self,
        stream: str,
        actor: str,
        to: VersionKey | None = None,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
        expected_champion: VersionKey | None = None,
        request: str | None = None,
    ) -> dict[str, Any]:
        """Archive the champion and make ``to`` (default: the previous champion) the champion again."""
        with self.store.transaction():
            roles = self.roles(stream)
            current = roles.champion
            if expected_champion is not None and expected_champion != current:
                raise Refused(409, f"the champion of {stream!r} is {current}, not {expected_champion}")
            target = to or self.previous_champion(stream)
            row = self.row(stream, target)
            revived = roles.alias_of(target) == ARCHIVED
            self._crown(stream, roles, target, demote_to=ARCHIVED, revive=True)
            extra = {
                "from": str(current),
                "reason": reason,
                "evidence": dict(evidence or {}),
                "request": request,
                "by": actor,
            }
            event = self._fact(stream, target, ROLLED_BACK, extra, alias=CHAMPION, subjects=[current])
        if revived:
            try:
                snapshot = self.snapshot_record(row)
            except ArtifactError as exc:
                # The rollback stands: processes that kept the version's model resume it.
                where = {"model": str(target), "error": str(exc)}
                log.error("revived version's artifact failed verification", extra=where)
            else:
                with self._revived_lock:
                    self._revived.append(snapshot)
        metrics.ROLLBACKS.labels(stream).inc()
        return event

    def _crown(self, stream: str, roles: StreamRoles, target: VersionKey, demote_to: str, revive: bool) -> None:
        """Make ``target`` the champion and give the current one ``demote_to``: promotion and rollback alike.

        Only a rollback may ``revive`` an archived version: it was a champion, and going back to it
        is the point; promoting an archived challenger would skip the trial that archived it.
        """
        current = roles.champion
        if target == current:
            raise Refused(409, f"{target} is already the champion of {stream!r}")
        if roles.alias_of(target) == ARCHIVED and not revive:
            raise Refused(409, f"{target} is archived; it cannot be promoted (roll back to it instead)")
        self.store.set_alias(stream, current, demote_to)
        self.store.set_alias(stream, target, CHAMPION)

    def archive(
        self,
        stream: str,
        key: VersionKey,
        actor: str,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
        request: str | None = None,
    ) -> dict[str, Any]:
        """Archive a version that is not the champion."""
        with self.store.transaction():
            roles = self.roles(stream)
            self.row(stream, key)
            if key == roles.champion:
                raise Refused(409, f"{key} is the champion of {stream!r}; promote another version first")
            if roles.alias_of(key) == ARCHIVED:
                raise Refused(409, f"{key} is already archived")
            self.store.set_alias(stream, key, ARCHIVED)
            extra = {"reason": reason, "evidence": dict(evidence or {}), "request": request, "by": actor}
            event = self._fact(stream, key, ARCHIVED_EVENT, extra, alias=ARCHIVED)
        return event

    def request_retrain(self, stream: str, actor: str, reason: str = "") -> dict[str, Any]:
        """Queue a ``retrain_requested`` event for the retraining service (model: the champion)."""
        with self.store.transaction():
            champion = self.roles(stream).champion
            details = {"reason": reason or "user request", "evidence": {"source": "user", "actor": actor}}
            event = self.store.append_event(stream, champion, RETRAIN_REQUESTED, actor, details, at_ms=self._now())
        return event

    def record_action(self, stream: str, action: str, actor: str, details: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an event recording an operator action done outside the registry (a DLQ replay) in the audit log.

        Its model is the champion, as for a retrain request: the action is the stream's, not a version's.
        """
        with self.store.transaction():
            champion = self.roles(stream).champion
            return self.store.append_event(stream, champion, action, actor, details, at_ms=self._now())

    def sync(self, stream: str) -> dict[str, Any]:
        """Queue a ``synced`` event: the stream's whole alias table, published on every start."""
        with self.store.transaction():
            roles = self.roles(stream)
            return self._fact(stream, roles.champion, SYNCED, {}, alias=CHAMPION, audit=False)

    def handle_request(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Apply a promotion, rollback or archive request, or refuse it; None for events that are not requests.

        The request's event id is stored with its outcome in the same transaction, so a request read
        again (a replay, a restart) is ignored.
        """
        kind = event.get("event_type")
        if kind not in REGISTRY_REQUESTS or event.get("actor") == ACTOR:
            return None
        stream, request_id = event["stream"], event["event_id"]
        if stream not in self.contracts:
            log.info("request for a stream not served here", extra={"stream": stream, "request": request_id})
            return None
        if self.store.handled(request_id) is not None:
            return None
        details = event_details(event)
        key = VersionKey(event["model_name"], int(event["model_version"]))
        actor = event.get("actor") or "unknown"
        reason, evidence = str(details.get("reason") or ""), details.get("evidence") or {}
        with self.store.transaction():
            if self.store.handled(request_id) is not None:
                return None
            try:
                expected = _key_or_none(details.get("expected_champion"))
                if kind == PROMOTION_REQUESTED:
                    out = self.promote(stream, key, actor, reason, evidence, expected, request_id)
                elif kind == ROLLBACK_REQUESTED:
                    current = self.roles(stream).champion
                    if key != current:
                        raise Refused(409, f"{key} is not the champion of {stream!r} ({current} is)")
                    to = _key_or_none(details.get("to"))
                    out = self.rollback(stream, actor, to, reason, evidence, expected or key, request_id)
                elif kind == ARCHIVE_REQUESTED:
                    out = self.archive(stream, key, actor, reason, evidence, request_id)
                outcome = "applied"
            except Refused as exc:
                out = self.store.append_event(
                    stream,
                    key,
                    REQUEST_REFUSED,
                    ACTOR,
                    {"request": request_id, "request_type": kind, "reason": exc.reason},
                    at_ms=self._now(),
                )
                outcome = f"refused: {exc.reason}"
                metrics.REFUSALS.labels(stream, str(kind)).inc()
            self.store.mark_handled(request_id, stream, outcome)
        return out

    def _now(self) -> int:
        return int(self.clock() * 1000)


class RegistryHandler:
    """The service loop's handler: candidates are registered, requests applied or refused."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            if record.topic == MODEL_CANDIDATES_TOPIC:
                try:
                    registered = self.registry.register_candidate(record.value)
                except CandidateError as exc:
                    metrics.BAD_CANDIDATES.labels(exc.reason).inc()
                    result.dead.append(record.dead(ACTOR, exc.reason, exc))
                    continue
                if registered is not None:
                    snapshot = self.registry.snapshot_record(registered.row)
                    topic = StreamTopics(registered.row.stream).models
                    key = snapshot_key(registered.row.name, registered.row.version, registered=True)
                    result.outputs.append(OutRecord(topic, key, snapshot, source=record))
            elif record.topic == MODEL_EVENTS_TOPIC:
                self.registry.handle_request(record.value)
                for snapshot in self.registry.take_revived():
                    topic = StreamTopics(snapshot["stream"]).models
                    key = snapshot_key(snapshot["model_name"], snapshot["model_version"], registered=True)
                    result.outputs.append(OutRecord(topic, key, snapshot, source=record))
        return result


class Lineage:
    """What learning learned into each registered version online, from its snapshots on ``S.models``.

    Per ``topic:partition`` a version learned ``from`` its snapshot's ``learned_from_offsets`` (0 when
    they are empty: from the beginning) ``through`` the last offset its latest snapshot has seen, both
    inclusive. Database writes are throttled to one per ``interval_s`` per version; :meth:`flush`
    writes what is due.
    """

    def __init__(self, store: Store, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._ranges: dict[tuple[str, VersionKey], dict[str, dict[str, int]]] = {}
        self._pending: dict[tuple[str, VersionKey], int] = {}
        self._written_at: dict[tuple[str, VersionKey], float] = {}
        # A version learning in shards: each shard's learned count, and the count every shard started from.
        self._shards: dict[tuple[str, VersionKey], dict[int, int]] = {}
        self._registered_count: dict[tuple[str, VersionKey], int] = {}

    def observe(self, snapshot: Mapping[str, Any]) -> bool:
        """Take in one snapshot; False when it is not learning's or its version is not registered."""
        source = snapshot.get("source_offsets") or {}
        if not source:
            return False  # the registry's own publication of a registered artifact
        stream = snapshot["stream"]
        ident = (stream, VersionKey(snapshot["model_name"], int(snapshot["model_version"])))
        ranges = self._ranges.get(ident)
        if ranges is None:
            row = self.store.version(*ident)
            if row is None:
                return False
            ranges = self._ranges[ident] = {tp: dict(r) for tp, r in row.online_ranges.items()}
            self._registered_count[ident] = row.learned_count
        # Empty learned_from_offsets: learning started at the beginning of its inputs (schemas/model_snapshot.avsc).
        started = snapshot.get("learned_from_offsets") or {}
        for tp, next_offset in source.items():
            ranges[tp] = {"from": int(started.get(tp, 0)), "through": int(next_offset) - 1}
        shard = snapshot.get("shard")
        if shard is None:
            self._pending[ident] = int(snapshot["learned_count"])
        else:
            # Every shard started from the registered model (its learned count): counted once.
            shards = self._shards.setdefault(ident, {})
            shards[int(shard)] = int(snapshot["learned_count"])
            base = self._registered_count.get(ident, 0)
            self._pending[ident] = sum(shards.values()) - base * (len(shards) - 1)
        return True

    def flush(self, force: bool = False) -> int:
        """Write the versions whose last write is at least ``interval_s`` old (all with ``force``)."""
        now = self.clock()
        written = 0
        for ident, learned in list(self._pending.items()):
            if not force and now - self._written_at.get(ident, -1e18) < self.interval_s:
                continue
            self.store.update_online(ident[0], ident[1], self._ranges[ident], learned)
            self._written_at[ident] = now
            del self._pending[ident]
            written += 1
        return written


def _key_or_none(value: Any) -> VersionKey | None:
    if value in (None, ""):
        return None
    try:
        return VersionKey.parse(str(value))
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc


def _json_object(text: Any) -> dict[str, Any]:
    try:
        doc = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {"unparsed": str(text)}
    return doc if isinstance(doc, dict) else {"value": doc}
