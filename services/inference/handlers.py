"""Pure inference: validated events in, predictions out, with whatever model is current."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.inference import metrics
from shared.contracts import ModelSpec, StreamContract
from shared.loop import BatchResult, InRecord, OutRecord
from shared.models import ModelState, build_estimator, class_key, predict_batch
from shared.topics import StreamTopics


@dataclass(frozen=True)
class ServingModel:
    """An immutable view of the model that answers: swapping one in is a single reference assignment."""

    name: str
    version: int
    learned: int
    estimator: Any
    features: tuple[str, ...]
    task: str

    @classmethod
    def fresh(cls, contract: StreamContract, spec: ModelSpec | None = None) -> ServingModel:
        """A new, untrained model of ``spec`` (the champion by default)."""
        spec = spec or contract.champion
        return cls(spec.name, 1, 0, build_estimator(spec), spec.features, contract.task)

    @classmethod
    def from_state(cls, state: ModelState, task: str) -> ServingModel:
        return cls(state.spec.name, state.version, state.learned_count, state.estimator, state.spec.features, task)

    def is_older_than(self, version: int, learned: int) -> bool:
        """A snapshot replaces this one if it is another version, or the same version further along."""
        return version != self.version or learned > self.learned


# Per stream, the models that predict it by name: the contract's first model is the champion, whose
# predictions are served; the others are challengers, predicting in shadow.
StreamModels = dict[str, dict[str, ServingModel]]


def fresh_models(contracts: dict[str, StreamContract]) -> StreamModels:
    """Untrained models for every model of every contract, the champion first."""
    return {name: {spec.name: ServingModel.fresh(c, spec) for spec in c.models} for name, c in contracts.items()}


class PredictBatch:
    """The inference handler.

    ``models`` holds the current :class:`ServingModel` of every model of every
    stream; the snapshot watcher replaces entries while this handler runs, and
    each batch uses the models it read at its start. Every model predicts every
    record: the champion's prediction is the served answer, each challenger's is
    logged with ``served`` false, so that it is evaluated and learns from the
    same labels without ever answering.
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
            champion = self.contracts[stream].champion.name
            # The champion first: its predictions are the answers, in the order of the records.
            for name, model in sorted(self.models[stream].items(), key=lambda kv: kv[0] != champion):
                result.outputs.extend(self._predict(stream, model, name == champion, batch, started_ms))
        return result

    def _predict(
        self, stream: str, model: ServingModel, served: bool, batch: list[InRecord], started_ms: float
    ) -> list[OutRecord]:
        contract = self.contracts[stream]
        rows = [{name: r.value.get(name) for name in model.features} for r in batch]
        answers = predict_batch(model.estimator, model.task, rows)
        now_ms = self.clock() * 1000
        latency_ms = now_ms - started_ms
        topic = StreamTopics(stream).predictions
        segment_field = contract.monitoring.segment
        outputs = []
        for record, features, (prediction, probabilities) in zip(batch, rows, answers, strict=True):
            event_id = record.value[contract.id_field]
            event_time = record.value[contract.time_field]
            ingested = record.header("eddy.ingested_at_ms")
            value = {
                "event_id": event_id,
                "stream": stream,
                "model_name": model.name,
                "model_version": model.version,
                "model_learned": model.learned,
                "served": served,
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
            }
            outputs.append(OutRecord(topic, event_id, value, timestamp_ms=event_time, source=record))
        metrics.PREDICTIONS.labels(stream, model.name, str(model.version)).inc(len(outputs))
        metrics.PREDICTION_LATENCY.labels(stream).observe(latency_ms / 1000)
        return outputs


def segment_of(value: dict[str, Any], segment_field: str | None) -> str | None:
    """The event's segment as a string (booleans as ``true``/``false``, like profiles); None without one.

    >>> segment_of({"region": "north"}, "region"), segment_of({"vip": True}, "vip"), segment_of({}, None)
    ('north', 'true', None)
    """
    raw = value.get(segment_field) if segment_field is not None else None
    return class_key(raw) if raw is not None else None
