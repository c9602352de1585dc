"""Pure inference: validated events in, predictions out, with whatever model is current."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eddy.contracts.learning import shard_of_key, shard_of_partition
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.topics import StreamTopics
from eddy.ml.models import ModelState, build_estimator, class_key, predict_batch
from eddy.ml.roles import VersionKey, in_canary
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.inference import metrics


@dataclass(frozen=True)
class ServingModel:
    """An immutable view of the model that answers: swapping one in is a single reference assignment.

    A version learning in shards (``learning: {mode: sharded}``) holds one model per shard in ``shards``:
    the record of partition ``p`` is answered by shard ``p % len(shards)``, a request that came over HTTP
    by the shard of its key (:func:`eddy.contracts.learning.shard_of_key`). ``learned`` is then its
    slowest shard's.
    """

    name: str
    version: int
    learned: int
    estimator: Any
    features: tuple[str, ...]
    task: str
    shards: tuple[ServingModel, ...] = ()
    # The label time of the newest label the model learned (ms; 0: none): label freshness, by shard.
    newest_label_ms: int = 0

    @classmethod
    def fresh(cls, contract: StreamContract, spec: ModelSpec | None = None) -> ServingModel:
        """A new, untrained model of ``spec`` (the champion by default); every shard starts from it."""
        spec = spec or contract.champion
        model = cls(spec.name, 1, 0, build_estimator(spec), spec.features, contract.task)
        return model.with_shards((model,) * spec.shards) if spec.shards > 1 else model

    def with_shards(self, shards: tuple[ServingModel, ...]) -> ServingModel:
        """This version answered by ``shards``, one model per shard, as far as they have learned."""
        return ServingModel(
            self.name, self.version, min(s.learned for s in shards), self.estimator, self.features, self.task, shards,
            min(s.newest_label_ms for s in shards),
        )  # fmt: skip

    @classmethod
    def from_state(cls, state: ModelState, task: str) -> ServingModel:
        return cls(state.spec.name, state.version, state.learned_count, state.estimator, state.spec.features, task)

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.name, self.version)

    def is_older_than(self, version: int, learned: int) -> bool:
        """A snapshot replaces this one if it is another version, or the same version further along."""
        return version != self.version or learned > self.learned


@dataclass(frozen=True)
class ServingSet:
    """What predicts one stream, swapped in as a whole by a single reference assignment.

    The champion answers; the challenger (if any) answers the canary share of
    events, chosen by a hash of ``event_id`` (see :func:`eddy.ml.roles.in_canary`),
    and predicts the rest in shadow; shadows predict every event and never answer.
    Every model predicts every record, so each is evaluated on, and learns from,
    the same labels.
    """

    champion: ServingModel
    challenger: ServingModel | None = None
    shadows: tuple[ServingModel, ...] = ()
    canary: float = 0.0

    @property
    def models(self) -> tuple[ServingModel, ...]:
        extra = (self.challenger,) if self.challenger is not None else ()
        return (self.champion, *extra, *self.shadows)


StreamModels = dict[str, ServingSet]


def fresh_models(contracts: dict[str, StreamContract]) -> StreamModels:
    """Untrained version-1 models of every contract model, with the default roles (the first model answers)."""
    return {
        name: ServingSet(
            ServingModel.fresh(c, c.champion),
            shadows=tuple(ServingModel.fresh(c, spec) for spec in c.models[1:]),
        )
        for name, c in contracts.items()
    }


class PredictBatch:
    """The inference handler.

    ``models`` holds the current :class:`ServingSet` of every stream; the
    snapshot watcher replaces it while this handler runs, and each batch uses
    the set it read at its start. The champion's predictions come first, in the
    order of the records; a prediction's ``served`` flag says whether it was the
    answer.
    """

    def __init__(
        self,
        contracts: dict[str, StreamContract],
        models: StreamModels,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.contracts = contracts
        self.models = models
        self.clock = clock

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        started_ms = self.clock() * 1000
        by_stream: dict[str, list[InRecord]] = defaultdict(list)
        for record in records:
            by_stream[record.stream].append(record)
        result = BatchResult()
        for stream, batch in by_stream.items():
            serving = self.models[stream]
            canary: list[bool] | None = None
            if serving.challenger is not None and serving.canary > 0:
                id_field = self.contracts[stream].id_field
                canary = [in_canary(str(r.value[id_field]), serving.canary) for r in batch]
            for model in serving.models:
                if model is serving.champion:
                    served: list[bool] | bool = [not c for c in canary] if canary is not None else True
                elif model is serving.challenger:
                    served = canary if canary is not None else False
                else:
                    served = False
                result.outputs.extend(self._predict(stream, model, served, batch, started_ms))
        return result

    def _predict(
        self, stream: str, model: ServingModel, served: list[bool] | bool, batch: list[InRecord], started_ms: float
    ) -> list[OutRecord]:
        contract = self.contracts[stream]
        rows = [{name: r.value.get(name) for name in model.features} for r in batch]
        if model.shards:
            shard_of, answers, learned = _predict_sharded(model, rows, batch, contract.id_field)
        else:
            shard_of, learned = [None] * len(batch), [model.learned] * len(batch)
            answers = predict_batch(model.estimator, model.task, rows)
        now_ms = self.clock() * 1000
        latency_ms = now_ms - started_ms
        topic = StreamTopics(stream).predictions
        segment_field = contract.monitoring.segment
        outputs = []
        flags = served if isinstance(served, list) else [served] * len(batch)
        for record, features, (prediction, probabilities), answered, shard, model_learned in zip(
            batch, rows, answers, flags, shard_of, learned, strict=True
        ):
            event_id = record.value[contract.id_field]
            event_time = record.value[contract.time_field]
            ingested = record.header("eddy.ingested_at_ms")
            value = {
                "event_id": event_id,
                "stream": stream,
                "model_name": model.name,
                "model_version": model.version,
                "model_learned": model_learned,
                "served": answered,
                "prediction": prediction,
                "probabilities": probabilities,
                "features": features,
                "event_time_ms": event_time,
                "predicted_at_ms": int(now_ms),
                "latency_ms": latency_ms,
                "ingested_at_ms": int(ingested) if ingested and ingested.isdigit() else None,
                "source_partition": record.partition,
                "source_offset": record.offset,
                "segment": segment_of(record.value, segment_field),
                "shard": shard,
            }
            outputs.append(OutRecord(topic, event_id, value, timestamp_ms=event_time, source=record))
        metrics.PREDICTIONS.labels(stream, model.name, str(model.version)).inc(len(outputs))
        metrics.PREDICTION_LATENCY.labels(stream).observe(latency_ms / 1000)
        return outputs


def _predict_sharded(
    model: ServingModel, rows: list[dict[str, Any]], batch: Sequence[InRecord], id_field: str
) -> tuple[list[int | None], list[tuple[Any, Any]], list[int]]:
    """Each record answered by its shard's model: the shard of each, the answers and each answering model's
    learned count, in the records' order."""
    n = len(model.shards)
    shard_of: list[int | None] = [
        shard_of_partition(r.partition, n) if r.partition >= 0 else shard_of_key(str(r.value[id_field]), n)
        for r in batch
    ]
    answers: list[tuple[Any, Any]] = [(None, None)] * len(batch)
    for shard, shard_model in enumerate(model.shards):
        mine = [i for i, s in enumerate(shard_of) if s == shard]
        if mine:
            predicted = predict_batch(shard_model.estimator, model.task, [rows[i] for i in mine])
            for i, answer in zip(mine, predicted, strict=True):
                answers[i] = answer
    return shard_of, answers, [model.shards[s].learned for s in shard_of if s is not None]


def segment_of(value: dict[str, Any], segment_field: str | None) -> str | None:
    """The event's segment as a string (booleans as ``true``/``false``, like profiles); None without one.

    >>> segment_of({"region": "north"}, "region"), segment_of({"vip": True}, "vip"), segment_of({}, None)
    ('north', 'true', None)
    """
    raw = value.get(segment_field) if segment_field is not None else None
    return class_key(raw) if raw is not None else None
