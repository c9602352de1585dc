"""The whole model lifecycle in one process: every service's pure handler, wired by an in-memory bus.

Inference (:class:`PredictBatch` over a :class:`ServingTable`), learning (one
:class:`Learner` per active version), monitoring (:class:`Monitor`), retraining
(:class:`Retraining`) and the model registry (:class:`Registry`, on a SQLite
store in a temporary directory) exchange exactly the records they exchange
through Kafka, in the same order a batch at a time, but with no broker: a run
is deterministic for a seed, and a 40,000-event scenario takes seconds.

Labels arrive in the same step as their events (no label delay), so "labels
after the change" and "events after the change" are the same count; and
learning's snapshots are taken after every batch (inference shares the
learners' models instead of unpickling copies).
"""

from __future__ import annotations

import hashlib
import itertools
import pickle
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.signing import Keyring
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC, StreamTopics
from eddy.ml.models import ModelState, load_snapshot_estimator
from eddy.ml.roles import ARCHIVED, PROMOTED, ROLLED_BACK, VersionKey, contract_roles, roles_of_event
from eddy.runtime.loop import InRecord, OutRecord
from eddy.services.inference.handlers import PredictBatch, ServingModel, fresh_models
from eddy.services.inference.serving import ServingTable
from eddy.services.learning.handlers import Learner, LearnerState
from eddy.services.model_registry.artifacts import ArtifactStore
from eddy.services.model_registry.handlers import Registry, RegistryHandler
from eddy.services.model_registry.store import Store
from eddy.services.monitoring.handlers import Monitor, MonitorConfig
from eddy.services.retraining.handlers import Retraining


class Clock:
    """Simulated seconds: one step per batch, so schedules and timestamps move with the stream."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Decision:
    at: int  # events drawn when it was published
    event_type: str
    version: str
    actor: str
    details: str


@dataclass
class Run:
    """What one run produced: per event, whether the served answer was right; and every model event."""

    correct: list[bool] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def windowed(self, window: int) -> list[float]:
        """Accuracy of the served answers over the last ``window`` events, at every event."""
        out, recent, hits = [], deque[bool](), 0
        for ok in self.correct:
            recent.append(ok)
            hits += ok
            if len(recent) > window:
                hits -= recent.popleft()
            out.append(hits / len(recent))
        return out


class Lifecycle:
    """The services of one stream, exchanging records batch by batch; ``retraining=False`` leaves the loop open."""

    def __init__(self, contract: StreamContract, state_dir: Path, *, retraining: bool = True) -> None:
        self.contract = contract
        self.clock = Clock()
        contracts = {contract.name: contract}
        self.topics = StreamTopics(contract.name)
        self.models = fresh_models(contracts)
        # One keyring for the whole in-process lifecycle, as one under a state dir is for the stack's services.
        self.keys = Keyring.generate()
        self.table = ServingTable(contracts, self.models, self.keys)
        self.predict = PredictBatch(contracts, self.models, clock=self.clock)
        self.monitor = Monitor(contract, MonitorConfig(), clock=self.clock)
        self.retraining = Retraining(contracts, signer=self.keys, clock=self.clock) if retraining else None
        store = Store(state_dir / "registry.db")
        self.registry = Registry(store, ArtifactStore(state_dir / "artifacts", self.keys), contracts, clock=self.clock)
        self.registry_handler = RegistryHandler(self.registry)
        self.roles = contract_roles(contract)
        self.learners: dict[VersionKey, Learner] = {
            m.key: Learner(contract, LearnerState(ModelState.fresh(contract.name, contract.model(m.name))))
            for m in self.models[contract.name].models
        }
        self._offsets: dict[str, itertools.count[int]] = {}
        self._registered: dict[VersionKey, dict[str, Any]] = {}
        self._events: list[InRecord] = []  # model events not yet seen by retraining and the registry
        self.drawn = 0
        self.run = Run()
        self._deliver_registry(self.registry.ensure_initial())

    def step(self, batch: list[tuple[dict[str, Any], Any]]) -> None:
        """One batch of events and their labels through every service."""
        self.clock.now += 1.0
        c = self.contract
        events = [
            {c.id_field: f"e{self.drawn + i}", c.time_field: self.drawn + i, **x} for i, (x, _) in enumerate(batch)
        ]
        self.drawn += len(batch)
        validated = self._records(self.topics.validated, events)
        predictions = self._records(self.topics.predictions, [o.value for o in self.predict(validated).outputs])
        labels = self._records(
            self.topics.feedback,
            [
                {"event_id": e[c.id_field], "label": y, "label_time_ms": e[c.time_field], "source": "bench"}
                for e, (_, y) in zip(events, batch, strict=True)
            ],
        )
        labeled_values: list[dict[str, Any]] = []
        for learner in self.learners.values():
            labeled_values += [o.value for o in learner(predictions + labels).outputs]
        labeled = self._records(self.topics.labeled, labeled_values)
        self._publish()
        truth = {e[c.id_field]: y for e, (_, y) in zip(events, batch, strict=True)}
        for example in labeled_values:
            if example["served"]:
                self.run.correct.append(example["prediction"] == truth[example["event_id"]])
        alerts = self._records(
            self.topics.alerts, [o.value for o in self.monitor(validated + predictions + labeled).outputs]
        )
        if self.retraining is None:
            return
        outputs = self.retraining(labeled + alerts + self._take_events()).outputs
        self._route(outputs)

    def inject(self, estimator: Any, name: str, *, force: bool = False) -> VersionKey:
        """Register ``estimator`` as a challenger of model ``name`` (as retraining would); ``force``: promote it."""
        artifact = pickle.dumps(estimator)
        champion = self.roles.champion
        candidate = {
            "candidate_id": f"injected-{self.drawn}",
            "stream": self.contract.name,
            "model_name": name,
            "parent_version": champion.version,
            "spec": self.contract.model(name).to_json(),
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "learned_count": 0,
            "training_offsets": [],
            "schema_ids": {},
            "metrics": "{}",
            "alias": "shadow",
            "code_version": "bench",
            "created_by": "bench",
            "created_at_ms": int(self.clock() * 1000),
            "reason": "injected",
        }
        registered = self.registry_handler(self._records(MODEL_CANDIDATES_TOPIC, [candidate]))
        self._deliver_registry([o.value for o in registered.outputs])
        key = VersionKey(name, max(k.version for k in self.roles.aliases if k.name == name))
        if force:
            self.registry.promote(self.contract.name, key, "user:bench", "forced by the benchmark")
            self._deliver_registry([])
        return key

    def _publish(self) -> None:
        """Learning's snapshots: inference serves what each learner has learned so far."""
        loaded = self.table.loaded[self.contract.name]
        for key, learner in self.learners.items():
            model = learner.state.model
            loaded[key] = ServingModel(
                key.name, key.version, model.learned_count, model.estimator, model.spec.features, self.contract.task
            )
        self.table.serve(self.contract.name)

    def _route(self, outputs: Iterable[OutRecord]) -> None:
        candidates, requests = [], []
        for out in outputs:
            if out.topic == MODEL_CANDIDATES_TOPIC:
                candidates.append(out.value)
            else:
                requests.append(out.value)
                self._events.append(self._records(MODEL_EVENTS_TOPIC, [out.value])[0])
                self._decision(out.value)
        registered = self.registry_handler(
            self._records(MODEL_CANDIDATES_TOPIC, candidates) + self._records(MODEL_EVENTS_TOPIC, requests)
        )
        self._deliver_registry([o.value for o in registered.outputs])

    def _deliver_registry(self, snapshots: list[dict[str, Any]]) -> None:
        """The registry's outbox and snapshots, to every follower."""
        for snapshot in snapshots:
            if snapshot.get("artifact") is not None:
                self.table.load(snapshot)
                self._registered[VersionKey(snapshot["model_name"], snapshot["model_version"])] = snapshot
        store = self.registry.store
        for seq, event in store.unpublished():
            store.mark_published([seq])
            self._events.append(self._records(MODEL_EVENTS_TOPIC, [event])[0])
            self._decision(event)
            self.monitor.on_model_event(event)
            if self.table.apply_event(event):
                self.table.serve(self.contract.name)
                roles = roles_of_event(event)
                if roles is not None:
                    self._follow(roles)

    def _follow(self, roles: Any) -> None:
        """Learning's side of an alias change: start new versions from their registered snapshot, drop archived ones."""
        self.roles = roles
        for key in roles.active:
            if key not in self.learners and key in self._registered:
                record = self._registered[key]
                spec = self.contract.model(key.name)
                state = ModelState(
                    self.contract.name,
                    spec,
                    load_snapshot_estimator(record, self.keys),
                    key.version,
                    record["learned_count"],
                )
                self.learners[key] = Learner(self.contract, LearnerState(state), champion=False)
        for key in list(self.learners):
            if roles.alias_of(key) == ARCHIVED:
                del self.learners[key]
            else:
                self.learners[key].champion = key == roles.champion

    def _decision(self, event: dict[str, Any]) -> None:
        self.run.decisions.append(
            Decision(
                self.drawn,
                event["event_type"],
                f"{event['model_name']}@{event['model_version']}",
                event["actor"],
                event["details"],
            )
        )

    def _take_events(self) -> list[InRecord]:
        events, self._events = self._events, []
        return events

    def _records(self, topic: str, values: list[dict[str, Any]]) -> list[InRecord]:
        offsets = self._offsets.setdefault(topic, itertools.count())
        return [InRecord(topic, 0, next(offsets), v.get("event_id"), v, 0, [], b"") for v in values]


def run_lifecycle(
    contract: StreamContract, draws: Iterator[tuple[dict[str, Any], Any]], n: int, *, retraining: bool, batch: int = 50
) -> Run:
    """``n`` events of ``draws`` through a fresh :class:`Lifecycle`."""
    with tempfile.TemporaryDirectory(prefix="eddy-lifecycle-") as tmp:
        life = Lifecycle(contract, Path(tmp), retraining=retraining)
        for _ in range(0, n, batch):
            chunk = list(itertools.islice(draws, batch))
            if not chunk:
                break
            life.step(chunk)
        life.registry.store.close()
        return life.run


__all__ = ["PROMOTED", "ROLLED_BACK", "Decision", "Lifecycle", "Run", "run_lifecycle"]
