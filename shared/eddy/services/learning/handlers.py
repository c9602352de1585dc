"""The feedback join and online learning, as a pure state machine (no Kafka in here).

A served prediction carries the exact features the model saw. When its label
arrives (before or after it), the pair becomes a labeled example: it is emitted
to S.labeled and learned once. Event ids already learned are remembered, so a
replayed or duplicated prediction or label is never learned twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.ml.labels import LabelError, coerce_label
from eddy.ml.models import ModelState
from eddy.runtime.dlq import PREDICTION_DELETED
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.learning import metrics
from eddy.services.learning.config import JoinLimits
from eddy.services.learning.exact_batch import ExactBatch


@dataclass
class PredictionGap:
    """Predictions of one partition (offsets ``first``..``last``) deleted by retention before the learner read them.

    ``kept_from_ms`` is the event time of the first prediction read after the gap, once one is: an event
    labelled before that time happened before every kept prediction of the partition, so its prediction,
    if it had one, was among the deleted.
    """

    first: int
    last: int
    log_start: int
    kept_from_ms: int | None = None

    def describe(self, topic: str, partition: int) -> str:
        return (
            f"predictions {self.first}..{self.last} of {topic}:{partition} were deleted by retention "
            "before the learner read them"
        )


# A prediction and its label, joined in this batch and waiting to be learned, with the record that completed them.
_Joined = tuple[dict[str, Any], dict[str, Any], InRecord]


@dataclass
class LearnerState:
    """Everything a learner must restore to carry on exactly where it was."""

    model: ModelState
    pending_predictions: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    pending_labels: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    learned: OrderedDict[str, int] = field(default_factory=OrderedDict)
    offsets: dict[str, int] = field(default_factory=dict)
    # Where this learner's S.labeled output ended at the checkpoint ("topic:partition" -> next offset), and
    # the event ids a crashed predecessor already emitted past that point: learned again, not emitted again.
    labeled_offsets: dict[str, int] = field(default_factory=dict)
    suppress: set[str] = field(default_factory=set)
    # The newest event time seen (predictions) and label time seen: the clocks lateness is measured on.
    event_watermark_ms: int = 0
    label_watermark_ms: int = 0
    # Per partition number (S.predictions and S.feedback are co-partitioned), the last retention gap of predictions.
    prediction_gaps: dict[int, PredictionGap] = field(default_factory=dict)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        # Checkpoints written before a field existed restore with its default.
        self.__dict__.update(saved)
        self.__dict__.setdefault("prediction_gaps", {})

    def forget_inputs(self) -> None:
        """Keep the model but drop what refers to a Kafka cluster that is gone."""
        self.pending_predictions.clear()
        self.pending_labels.clear()
        self.learned.clear()
        self.offsets.clear()
        self.labeled_offsets.clear()
        self.suppress.clear()
        self.model.source_offsets.clear()
        self.prediction_gaps.clear()


class Learner:
    """The learning handler for one model of a stream.

    It joins labels with that model's own predictions (served or in shadow) and
    learns each label once. Labels that cannot be learned (unusable, duplicate,
    later than the allowed lateness) are dead-lettered by the ``champion``'s
    learner only, so that each is dead-lettered once however many models learn.
    """

    def __init__(
        self,
        contract: StreamContract,
        state: LearnerState,
        limits: JoinLimits = JoinLimits(),  # noqa: B008 (frozen, so one shared default is safe)
        clock: Callable[[], float] = time.time,
        champion: bool = True,
    ) -> None:
        self.contract = contract
        self.state = state
        self.limits = limits
        self.clock = clock
        self.champion = champion
        self.topics = StreamTopics(contract.name)
        # Looked up once: labels() costs more than the update itself.
        self._learned = metrics.LEARNED.labels(contract.name, state.model.spec.name)
        self._label_delay = metrics.LABEL_DELAY.labels(contract.name)
        self._to_learned = metrics.LABEL_TO_LEARNED.labels(contract.name, state.model.spec.name)
        # Examples joined in the current batch, learned together at its end (see _learn_joined), in join order.
        self._joined: list[_Joined] = []
        self._batch: ExactBatch | None = None

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        predictions, feedback = self.topics.predictions, self.topics.feedback
        on_prediction, on_label = self._on_prediction, self._on_label
        for record in records:
            # Never raise: the model may already have learned from earlier batches' records, so the batch
            # must not be retried; a record that fails is dead-lettered on its own.
            try:
                topic = record.topic
                if topic == predictions:
                    on_prediction(record, result)
                elif topic == feedback:
                    on_label(record, result)
            except Exception as exc:
                result.dead.append(record.dead("learning", "learn_error", exc, f"{type(exc).__name__}: {exc}"))
        self._learn_joined(result)
        self._expire(result)
        self._bound(result)
        metrics.JOIN_STATE.labels(self.contract.name, "predictions").set(len(self.state.pending_predictions))
        metrics.JOIN_STATE.labels(self.contract.name, "labels").set(len(self.state.pending_labels))
        return result

    def prediction_gap(self, partition: int, first: int, last: int, log_start: int) -> None:
        """Predictions ``first``..``last`` of ``partition`` were deleted unread: labels that needed them are
        dead-lettered as ``prediction_deleted`` once the first kept prediction shows which ones they are."""
        self.state.prediction_gaps[partition] = PredictionGap(first, last, log_start)

    def _on_prediction(self, record: InRecord, result: BatchResult) -> None:
        value = record.value
        gaps = self.state.prediction_gaps
        if gaps and (gap := gaps.get(record.partition)) is not None and gap.kept_from_ms is None:
            # Any model's prediction dates what was kept, not just this learner's.
            gap.kept_from_ms = value["event_time_ms"]
            self._orphans(record.partition, gap, result)
        state = self.state
        model = state.model
        if value["model_name"] != model.spec.name or value["model_version"] != model.version:
            return  # another version's prediction: its own learner joins it
        event_id = value["event_id"]
        if event_id in state.learned or event_id in state.pending_predictions:
            metrics.DUPLICATES.labels(self.contract.name, "prediction").inc()
            return
        if value["event_time_ms"] > state.event_watermark_ms:
            state.event_watermark_ms = value["event_time_ms"]
        label = state.pending_labels.pop(event_id, None)
        if label is None:
            state.pending_predictions[event_id] = value
        else:
            state.learned[event_id] = 0  # see _join
            self._joined.append((value, label, record))

    def _on_label(self, record: InRecord, result: BatchResult) -> None:
        value = record.value
        event_id = value["event_id"]
        state = self.state
        if event_id in state.learned or event_id in state.pending_labels:
            if self.champion:
                metrics.DUPLICATES.labels(self.contract.name, "label").inc()
                message = (
                    f"a label for {event_id} was already {'learned' if event_id in self.state.learned else 'received'}"
                )
                result.dead.append(record.dead("learning", "duplicate_label", message=message))
            return
        try:
            label = coerce_label(value["label"], self.contract.task)
        except LabelError as exc:
            if self.champion:
                result.dead.append(record.dead("learning", "bad_label", exc))
            return
        # In place, not a copy: every learner of the stream gets the same decoded dict, and each writes the same
        # values (coerce_label gives back a label it has coerced), so no learner sees another's state.
        value["label"], value["_raw"], value["_coords"] = label, record.raw, (record.partition, record.offset)
        if value["label_time_ms"] > state.label_watermark_ms:
            state.label_watermark_ms = value["label_time_ms"]
        prediction = state.pending_predictions.pop(event_id, None)
        if prediction is not None:
            state.learned[event_id] = 0  # see _join
            self._joined.append((prediction, value, record))
        elif (gap := self._deleted_for(record.partition, value)) is not None:
            self._dead_label(value, PREDICTION_DELETED, self._deleted_message(value, record.partition, gap), result)
        else:
            self.state.pending_labels[event_id] = value

    def _deleted_for(self, partition: int, label: dict[str, Any]) -> PredictionGap | None:
        """The gap that took this label's prediction, when the label predates every kept prediction of its partition."""
        gap = self.state.prediction_gaps.get(partition) if self.state.prediction_gaps else None
        if gap is None or gap.kept_from_ms is None or label["label_time_ms"] >= gap.kept_from_ms:
            return None
        return gap

    def _deleted_message(self, label: dict[str, Any], partition: int, gap: PredictionGap) -> str:
        return (
            f"no prediction for {label['event_id']}: labelled at {label['label_time_ms']}, before the first kept "
            f"prediction of its partition (event time {gap.kept_from_ms}); "
            f"{gap.describe(self.topics.predictions, partition)}"
        )

    def _orphans(self, partition: int, gap: PredictionGap, result: BatchResult) -> None:
        """Dead-letter the pending labels of ``partition`` whose predictions ``gap`` deleted, once it is dated."""
        labels = self.state.pending_labels
        orphans = [
            event_id
            for event_id, label in labels.items()
            if label["_coords"][0] == partition and self._deleted_for(partition, label) is not None
        ]
        for event_id in orphans:
            label = labels.pop(event_id)
            self._dead_label(label, PREDICTION_DELETED, self._deleted_message(label, partition, gap), result)

    def _learn_joined(self, result: BatchResult) -> None:
        """Learn the batch's joined examples in join order, in one call where the model allows (``ExactBatch``),
        and emit the labeled example of each one learned.

        A pair is joined (``_on_prediction``, ``_on_label``) by queueing it in ``_joined`` with the record that
        completed it; its id counts as learned from then on, so that a duplicate later in the same batch is
        refused, and is forgotten again here if learning it fails.
        """
        joined, self._joined = self._joined, []
        if not joined:
            return
        model, state = self.state.model, self.state
        if self._batch is None or self._batch.estimator is not model.estimator:
            self._batch = ExactBatch(model.estimator, model.spec.features, self.contract.task)
        errors = self._batch.learn([(prediction["features"], label["label"]) for prediction, label, _ in joined])
        now_ms = int(self.clock() * 1000)
        learned, delays, ages, newest = state.learned, [], [], model.newest_label_ms
        example, suppress, outputs = self._example, state.suppress, result.outputs
        for (prediction, label, record), error in zip(joined, errors, strict=True):
            event_id = prediction["event_id"]
            if error is not None:
                # Counted and remembered only once learned: a failure leaves the label unlearned.
                learned.pop(event_id, None)
                message = f"{type(error).__name__}: {error}"
                result.dead.append(record.dead("learning", "learn_error", error, message))
                continue
            learned[event_id] = now_ms
            label_time_ms = label["label_time_ms"]
            delays.append((label_time_ms - prediction["event_time_ms"]) / 1000)
            # Freshness: how long the label took to be learned, and the newest label the model includes.
            ages.append((now_ms - label_time_ms) / 1000)
            if label_time_ms > newest:
                newest = label_time_ms
            if suppress and event_id in suppress:
                # A crashed predecessor wrote this labeled example after the checkpoint: learned again, not written.
                suppress.discard(event_id)
                metrics.DUPLICATES.labels(self.contract.name, "already_emitted").inc()
            else:
                outputs.append(example(prediction, label, now_ms))
        model.newest_label_ms = newest
        model.learned_count += len(delays)
        self._learned.inc(len(delays))
        metrics.observe_many(self._label_delay, delays)
        metrics.observe_many(self._to_learned, ages)

    def _example(self, prediction: dict[str, Any], label: dict[str, Any], now_ms: int) -> OutRecord:
        """The labeled example of a learned pair, for S.labeled."""
        example = {
            "event_id": prediction["event_id"],
            "stream": self.contract.name,
            "model_name": prediction["model_name"],
            "model_version": prediction["model_version"],
            "model_learned": prediction["model_learned"],
            "prediction": prediction["prediction"],
            "probabilities": prediction["probabilities"],
            "features": prediction["features"],
            "label": label["label"],
            "event_time_ms": prediction["event_time_ms"],
            "predicted_at_ms": prediction["predicted_at_ms"],
            "label_time_ms": label["label_time_ms"],
            "joined_at_ms": now_ms,
            "segment": prediction.get("segment"),
            "served": prediction.get("served"),
            "shard": prediction.get("shard"),
        }
        return OutRecord(self.topics.labeled, prediction["event_id"], example, timestamp_ms=prediction["event_time_ms"])

    def _expire(self, result: BatchResult) -> None:
        """Forget what is later than the contract's allowed lateness (pending entries are in arrival order).

        A prediction nobody labelled within the lateness is dropped from the join state; a label
        whose prediction never came within it is dead-lettered as ``late_label``, never lost silently.
        """
        state, lateness, stream = self.state, self.contract.allowed_lateness_ms, self.contract.name
        pending = state.pending_predictions
        while pending and next(iter(pending.values()))["event_time_ms"] < state.event_watermark_ms - lateness:
            pending.popitem(last=False)
            metrics.EVICTED.labels(stream, "predictions").inc()
        labels = state.pending_labels
        while labels and next(iter(labels.values()))["label_time_ms"] < state.label_watermark_ms - lateness:
            _, label = labels.popitem(last=False)
            message = f"no prediction for {label['event_id']} within the allowed lateness ({lateness} ms)"
            gap = state.prediction_gaps.get(label["_coords"][0]) if state.prediction_gaps else None
            if gap is not None:
                message += f"; {gap.describe(self.topics.predictions, label['_coords'][0])}"
            self._dead_label(label, "late_label", message, result)

    def _dead_label(self, label: dict[str, Any], reason: str, message: str, result: BatchResult) -> None:
        """A pending label given up on, dead-lettered (by the champion's learner) with its bytes and coordinates."""
        if not self.champion:
            return
        partition, offset = label["_coords"]
        record = InRecord(self.topics.feedback, partition, offset, label["event_id"], {}, 0, [], label["_raw"])
        metrics.EVICTED.labels(self.contract.name, "labels").inc()
        result.dead.append(record.dead("learning", reason, message=message))

    def _bound(self, result: BatchResult) -> None:
        """Keep memory bounded; an unjoined label pushed out is dead-lettered, never silently dropped."""
        state, limits, stream = self.state, self.limits, self.contract.name
        while len(state.pending_predictions) > limits.max_pending:
            state.pending_predictions.popitem(last=False)
            metrics.EVICTED.labels(stream, "predictions").inc()
        while len(state.pending_labels) > limits.max_pending:
            _, label = state.pending_labels.popitem(last=False)
            message = "no prediction arrived before the join state filled"
            self._dead_label(label, "join_expired", message, result)
        while len(state.learned) > limits.max_remembered:
            state.learned.popitem(last=False)
