"""What answers each stream, from snapshots and alias tables: pure, so the watcher and benchmarks share it."""

from __future__ import annotations

import logging
import time
from typing import Any

from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.ml.artifacts import Signer
from eddy.ml.models import build_estimator, load_snapshot_estimator
from eddy.ml.roles import ARCHIVED, StreamRoles, VersionKey, contract_roles, roles_of_event
from eddy.services.inference import metrics
from eddy.services.inference.handlers import ServingModel, ServingSet, StreamModels

log = logging.getLogger(__name__)


class ServingTable:
    """Keeps ``models`` (the serving set of every stream) in line with the snapshots and alias tables it is given.

    It holds the newest model of every version it has seen, whatever its alias,
    so a promotion needs no wait; a version is switched in only once its model
    has arrived, and until then the one serving keeps answering. The last
    ``keep_archived`` archived versions of a stream stay held too, as they last
    served, so a rollback to one of them is answered at once.
    """

    keep_archived = 2

    def __init__(self, contracts: dict[str, StreamContract], models: StreamModels, signer: Signer) -> None:
        self.contracts = contracts
        self.signer = signer
        self.models = models
        self.roles: dict[str, StreamRoles] = {s: contract_roles(c) for s, c in contracts.items()}
        self.loaded: dict[str, dict[VersionKey, ServingModel]] = {
            s: {m.key: m for m in serving.models} for s, serving in models.items()
        }
        self.archived: dict[str, dict[VersionKey, ServingModel]] = {s: {} for s in models}

    def apply_event(self, event: dict[str, Any]) -> bool:
        """Take the alias table a model event carries; True if it changed what this process knows."""
        roles = roles_of_event(event)
        if roles is None or roles.stream not in self.roles or roles == self.roles[roles.stream]:
            return False
        self.roles[roles.stream] = roles
        return True

    def load(self, record: dict[str, Any]) -> bool:
        """Hold the snapshot's model if it is newer than the one held for its version.

        Raises
        ------
        SnapshotError
            For a snapshot refused (a signature that does not verify, a bad checksum): nothing changes.
        """
        stream, name, version = record["stream"], record["model_name"], record["model_version"]
        contract = self.contracts.get(stream)
        if contract is None or name not in {m.name for m in contract.models}:
            return False  # a model this process does not run
        key = VersionKey(name, version)
        if self.roles[stream].alias_of(key) == ARCHIVED:
            return False
        current = self.loaded[stream].get(key)
        spec = contract.model(name)
        if spec.shards > 1:
            return self._load_shard(stream, spec, record, current)
        if current is not None and not current.is_older_than(version, record["learned_count"]):
            return False
        estimator = load_snapshot_estimator(record, self.signer)
        self.loaded[stream][key] = ServingModel(
            name, version, record["learned_count"], estimator, spec.features, contract.task
        )
        metrics.SNAPSHOT_SWAPS.labels(stream, name).inc()
        metrics.SNAPSHOT_LEARNED.labels(stream, name).set(record["learned_count"])
        metrics.SNAPSHOT_AGE.labels(stream).set(max(0.0, time.time() - record["created_at_ms"] / 1000))
        self._freshness(stream, name, record.get("newest_label_ms") or 0, replaces=current)
        return True

    def _load_shard(self, stream: str, spec: ModelSpec, record: dict[str, Any], current: ServingModel | None) -> bool:
        """Hold a snapshot of a version learning in shards: one shard's model, or the whole version's.

        The whole version's (the registry's snapshot, a shard-less one) stands in for every shard that has
        not learned past it; until any arrives, a shard answers with a fresh model of the spec.
        """
        contract = self.contracts[stream]
        version, learned, shard = record["model_version"], record["learned_count"], record.get("shard")
        if shard is not None and not 0 <= shard < spec.shards:
            where = {"stream": stream, "model": spec.name, "shard": shard, "shards": spec.shards}
            log.warning("snapshot of an unknown shard ignored", extra=where)
            return False
        if current is None or current.version != version or len(current.shards) != spec.shards:
            # Learned -1: anything that arrives replaces it.
            fresh = ServingModel(spec.name, version, -1, build_estimator(spec), spec.features, contract.task)
            held = (fresh,) * spec.shards
        else:
            held = current.shards
        targets = range(spec.shards) if shard is None else (shard,)
        replaced = [s for s in targets if learned > held[s].learned or (shard is not None and held[s].learned < 0)]
        if not replaced:
            return False
        newest = record.get("newest_label_ms") or 0
        model = ServingModel(spec.name, version, learned, load_snapshot_estimator(record, self.signer),
                             spec.features, contract.task, newest_label_ms=newest)  # fmt: skip
        shards = tuple(model if s in replaced else held[s] for s in range(spec.shards))
        whole = model.with_shards(shards)
        self.loaded[stream][whole.key] = whole
        metrics.SNAPSHOT_SWAPS.labels(stream, spec.name).inc()
        metrics.SNAPSHOT_LEARNED.labels(stream, spec.name).set(max(0, whole.learned))
        metrics.SNAPSHOT_AGE.labels(stream).set(max(0.0, time.time() - record["created_at_ms"] / 1000))
        same_version = current is not None and current.version == version
        self._freshness(stream, spec.name, newest, replaces=current if same_version else None)
        if whole.newest_label_ms > 0:
            # A version in shards is as fresh as its slowest shard: the label time every shard has learned to.
            metrics.SERVED_LABEL_TIME.labels(stream, spec.name).set(whole.newest_label_ms / 1000)
        return True

    @staticmethod
    def _freshness(stream: str, name: str, newest_label_ms: int, replaces: ServingModel | None) -> None:
        """Label to served: the newest label the snapshot learned is served from now on."""
        if newest_label_ms <= 0:
            return  # the registry's snapshot, or a model that has learned nothing yet
        metrics.SERVED_LABEL_TIME.labels(stream, name).set(newest_label_ms / 1000)
        # Only a snapshot replacing one already held: the first after a (re)start would count the restart's wait.
        if replaces is not None:
            metrics.LABEL_TO_SERVED.labels(stream, name).observe(max(0.0, time.time() - newest_label_ms / 1000))

    def serve(self, stream: str) -> bool:
        """Swap in the serving set the alias table asks for, as far as its models have arrived."""
        roles, loaded, current = self.roles[stream], self.loaded[stream], self.models[stream]
        self._file_archived(stream)
        # Until the new champion's model arrives, the one serving keeps answering.
        champion = loaded.get(roles.champion) or loaded.get(current.champion.key) or current.champion
        challenger_key = roles.challenger
        challenger = loaded.get(challenger_key) if challenger_key is not None else None
        shadows = tuple(loaded[k] for k in roles.active if k in loaded and k not in (champion.key, challenger_key))
        serving = ServingSet(champion, challenger, shadows, roles.canary)
        if serving == current:
            return False
        self.models[stream] = serving
        if champion.key != current.champion.key:
            metrics.CHAMPION_SWITCHES.labels(stream).inc()
            log.info("champion switched", extra={"stream": stream, "champion": str(champion.key)})
        return True

    def _file_archived(self, stream: str) -> None:
        """Move archived versions out of ``loaded`` (newest last, bounded) and revived ones back in."""
        roles, loaded, archived = self.roles[stream], self.loaded[stream], self.archived[stream]
        for key, alias in roles.aliases.items():
            if alias == ARCHIVED and key in loaded:
                archived[key] = loaded.pop(key)
            elif alias != ARCHIVED and key in archived:
                revived = archived.pop(key)
                if key not in loaded or loaded[key].is_older_than(revived.version, revived.learned):
                    loaded[key] = revived
        while len(archived) > self.keep_archived:
            del archived[next(iter(archived))]
