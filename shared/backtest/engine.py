"""The backtest engine: a stream's history through the production model code, in event-time order.

Events are predicted in the order of their event time; each label is learned
when it would have arrived. The order is river's ``stream.simulate_qa``: before
an event at time ``t`` is predicted, every label due at or before ``t`` is
revealed, in order of arrival (ties in the order of their events), and the
labels still due at the end are revealed last. So the final metric is that of
``evaluate.progressive_val_score`` on the same sequence with the same delay.

Predicting and learning are the services' own functions
(:func:`shared.models.predict_batch` as inference calls it and
:func:`shared.models.learn` as learning does), the label is coerced as learning
coerces it, the first label of an event wins, and a label later than the
contract's ``allowed_lateness`` is not learned, as in production.

>>> from river import datasets
>>> from shared.contracts import load_contract
>>> from shared.settings import REPO_ROOT
>>> contract = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
>>> events = [Event(f"e{i}", i, {"x0": x[0], "x1": x[1], "x2": x[2]}) for i, (x, _) in
...           enumerate(datasets.synth.SEA(variant=0, seed=1).take(500))]
>>> labels = {e.event_id: Label(bool(e.record["x0"] + e.record["x1"] <= 8), e.time_ms + 10) for e in events}
>>> result = run_backtest(contract, events, labels, [BacktestModel.fresh(contract.champion)], delay=OBSERVED)
>>> len(result.table), round(result.summary["models"][0]["final_metric"], 3) > 0.9
(500, True)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from river import metrics

from services.learning.handlers import LabelError, coerce_label
from shared.contracts import ModelSpec, StreamContract
from shared.linear_kernel import LinearKernel
from shared.models import build_estimator, class_key, learn, predict_batch

# How label arrival is decided: the observed time, or the event time plus a fixed delay in ms.
OBSERVED = "observed"


@dataclass(frozen=True)
class Event:
    """One event as it was validated: its id, event time (ms) and record (the features among its fields)."""

    event_id: str
    time_ms: int
    record: Mapping[str, Any]


@dataclass(frozen=True)
class Label:
    """An event's label and when it arrived (ms, the clock of event times)."""

    value: Any
    arrived_ms: int


@dataclass
class BacktestModel:
    """A model to backtest: a spec and the estimator it starts from (fresh, or a registry version's)."""

    name: str
    spec: ModelSpec
    estimator: Any
    start: str = "fresh"

    @classmethod
    def fresh(cls, spec: ModelSpec, name: str | None = None) -> BacktestModel:
        return cls(name or f"spec:{spec.name}", spec, build_estimator(spec))

    @classmethod
    def warm(cls, spec: ModelSpec, estimator: Any, name: str) -> BacktestModel:
        # A copy: the registry's (or caller's) estimator stays as it was.
        return cls(name, spec, copy.deepcopy(estimator), f"warm from {name}")


@dataclass
class BacktestResult:
    table: pd.DataFrame
    summary: dict[str, Any]
    estimators: dict[str, Any] = field(default_factory=dict)


# The schedule: PREDICT i or LEARN i, where i is the event's position in event-time order.
PREDICT, LEARN = 0, 1
MIN_BATCH = 32


def schedule(events: Sequence[Event], arrivals: Sequence[int | None]) -> list[tuple[int, int]]:
    """Interleave predictions and label arrivals as ``simulate_qa`` does (``arrivals[i]`` None: no label).

    A label is learned just before the first later event whose time has reached its arrival (labels
    due at the same point in arrival order, ties in event order), and the labels still due at the end
    are learned last. A label cannot be learned before its own prediction: one "from the past" comes
    right after it.

    >>> schedule([Event("a", 0, {}), Event("b", 5, {}), Event("c", 6, {})], [5, 0, None])
    [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    """
    kinds, index = schedule_arrays(np.fromiter((e.time_ms for e in events), np.int64, len(events)), arrivals)
    return list(zip(kinds.tolist(), index.tolist(), strict=True))


def schedule_arrays(times: np.ndarray, arrivals: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`schedule` as two arrays (kind, event position), sorted with numpy instead of a Python loop."""
    n = len(times)
    labelled = np.fromiter((a is not None for a in arrivals), bool, n)
    positions = np.flatnonzero(labelled)
    due = np.fromiter((a for a in arrivals if a is not None), np.int64, len(positions))
    due = np.maximum(due, times[positions])
    # The event a label is learned before: the first one after its own whose time has reached it.
    before = np.maximum(np.searchsorted(times, due, side="left"), positions + 1)
    # Sort keys, most significant last (np.lexsort): the event slot, learns (0) before the prediction (1),
    # then arrival and event order among the learns of one slot.
    slot = np.concatenate([np.arange(n), before])
    kind = np.concatenate([np.ones(n, np.int8), np.zeros(len(positions), np.int8)])
    arrival = np.concatenate([np.zeros(n, np.int64), due])
    index = np.concatenate([np.arange(n), positions])
    order = np.lexsort((index, arrival, kind, slot))
    return (1 - kind[order]).astype(np.uint8), index[order].astype(np.int64)


def arrivals_of(
    events: Sequence[Event], labels: Mapping[str, Label], delay: str | int, lateness_ms: int | None
) -> list[int | None]:
    """When each event's label is learned: observed, or event time + ``delay`` ms; None if never."""
    out: list[int | None] = []
    for event in events:
        label = labels.get(event.event_id)
        if label is None:
            out.append(None)
            continue
        arrived = label.arrived_ms if delay == OBSERVED else event.time_ms + int(delay)
        late = lateness_ms is not None and arrived - event.time_ms > lateness_ms
        out.append(None if late else arrived)
    return out


def run_backtest(
    contract: StreamContract,
    events: Sequence[Event],
    labels: Mapping[str, Label],
    models: Sequence[BacktestModel],
    delay: str | int = OBSERVED,
    lateness_ms: int | None = None,
) -> BacktestResult:
    """Predict every event and learn every label in the order they would have happened, for each model.

    ``events`` must be in event-time order (ties broken as the caller wants: deterministically);
    ``lateness_ms`` defaults to the contract's ``allowed_lateness``.
    """
    task = contract.task
    lateness = contract.allowed_lateness_ms if lateness_ms is None else lateness_ms
    arrivals = arrivals_of(events, labels, delay, lateness)
    times = np.fromiter((e.time_ms for e in events), np.int64, len(events))
    kinds, index = schedule_arrays(times, arrivals)
    ops = list(zip(kinds.tolist(), index.tolist(), strict=True))
    targets: list[Any] = []
    unusable = 0
    for event, arrived in zip(events, arrivals, strict=True):
        if arrived is None:
            targets.append(None)
            continue
        try:
            targets.append(coerce_label(labels[event.event_id].value, task))
        except LabelError:
            targets.append(None)
            unusable += 1
    frames, summaries, estimators = [], [], {}
    for model in models:
        frame, summary = _run_one(task, model, events, arrivals, targets, ops)
        frames.append(frame)
        summaries.append(summary)
        estimators[model.name] = model.estimator
    table = _merge(frames)
    labelled = sum(t is not None for t in targets)
    summary = {
        "task": task,
        "metric": HEADLINE[task],
        "label_delay": delay if delay == OBSERVED else f"{int(delay)} ms",
        "data": {"events": len(events), "labels": labelled, "unusable_labels": unusable},
        "models": summaries,
    }
    return BacktestResult(table, summary, estimators)


HEADLINE = {"binary": "accuracy", "multiclass": "accuracy", "regression": "mae"}


def _metric_set(task: str) -> dict[str, metrics.base.Metric]:
    if task == "regression":
        return {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
    if task == "binary":
        return {"accuracy": metrics.Accuracy(), "f1": metrics.F1(), "log_loss": metrics.LogLoss()}
    return {"accuracy": metrics.Accuracy(), "macro_f1": metrics.MacroF1()}


def _run_one(
    task: str,
    model: BacktestModel,
    events: Sequence[Event],
    arrivals: Sequence[int | None],
    targets: Sequence[Any],
    ops: Sequence[tuple[int, int]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    estimator, features = model.estimator, model.spec.features
    kernel = LinearKernel.of(estimator, features) if task in ("binary", "regression") else None
    matrix = _matrix(events, features) if kernel is not None else None
    if kernel is not None and matrix is not None:
        return _run_native(task, model, kernel, matrix, events, arrivals, targets, ops)
    rows = [{f: e.record.get(f) for f in features} for e in events]
    predicted: list[tuple[Any, dict[str, float] | None] | None] = [None] * len(events)
    headline = HEADLINE[task]
    scores = _metric_set(task)
    main = scores[headline]
    seq: list[int] = []
    index: list[int] = []
    y_true: list[Any] = []
    y_pred: list[Any] = []
    score: list[float] = []
    cumulative: list[float] = []
    learned = 0
    k = 0
    while k < len(ops):
        op, i = ops[k]
        if op == PREDICT:
            # Consecutive predictions see the same model: one batch, as inference predicts a batch.
            end = k
            while end < len(ops) and ops[end][0] == PREDICT:
                end += 1
            positions = [j for _, j in ops[k:end]]
            # A DataFrame costs more than a few predict_one calls: batches only pay from a few dozen rows.
            big = len(positions) >= MIN_BATCH
            batch = predict_batch(estimator, task, [rows[j] for j in positions]) if big else None
            for n, j in enumerate(positions):
                predicted[j] = batch[n] if batch is not None else predict_batch(estimator, task, [rows[j]])[0]
            k = end
            continue
        k += 1
        y = targets[i]
        if y is None:
            continue  # an unusable label: production dead-letters it
        answer = predicted[i]
        guess, proba = answer if answer is not None else (None, None)
        if guess is not None:
            _update(scores, y, guess, proba)
        learn(estimator, rows[i], y)
        learned += 1
        seq.append(len(seq))
        index.append(i)
        y_true.append(y)
        y_pred.append(guess)
        score.append(_score(task, guess, proba))
        cumulative.append(float(main.get()))
    frame = _frame(task, model.name, events, arrivals, seq, index, y_true, y_pred, score, cumulative)
    finals = {name: _finite(m.get()) for name, m in scores.items()}
    return frame, _model_summary(model, len(events), learned, float(main.get()), finals)


def _model_summary(
    model: BacktestModel, events: int, labels: int, final: float, finals: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": model.name,
        "spec": model.spec.to_json(),
        "start": model.start,
        "events": events,
        "labels": labels,
        "final_metric": final,
        "metrics": finals,
    }


def _matrix(events: Sequence[Event], features: Sequence[str]) -> np.ndarray | None:
    """The features as a float matrix, or None if any is missing or not a number (river's path handles those)."""
    try:
        values = [[e.record[f] for f in features] for e in events]
        matrix = np.array(values, dtype=np.float64).reshape(len(events), len(features))
    except (KeyError, TypeError, ValueError):
        return None
    return matrix if np.isfinite(matrix).all() else None


def _run_native(
    task: str,
    model: BacktestModel,
    kernel: LinearKernel,
    matrix: np.ndarray,
    events: Sequence[Event],
    arrivals: Sequence[int | None],
    targets: Sequence[Any],
    ops: Sequence[tuple[int, int]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The same sequence through :class:`LinearKernel`: river's arithmetic, and its metrics computed at once."""
    steps = [(op, i) for op, i in ops if op == PREDICT or targets[i] is not None]
    kinds = np.fromiter((op for op, _ in steps), dtype=np.uint8, count=len(steps))
    index = np.fromiter((i for _, i in steps), dtype=np.int64, count=len(steps))
    y = np.array([math.nan if t is None else float(t) for t in targets], dtype=np.float64)
    out = kernel.run(kinds, index, matrix, y)
    learned = index[kinds == LEARN]
    truth, p = y[learned], out[learned]
    n = np.arange(1, len(learned) + 1, dtype=np.float64)
    if task == "binary":
        # LogisticRegression answers {False: 1 - p, True: p}; the first most probable class wins.
        guess = p > 1.0 - p
        correct = (guess == (truth == 1.0)).astype(np.float64)
        cumulative = np.cumsum(correct) / n
        clamped = np.clip(p, 1e-15, 1 - 1e-15)
        tp, fp, fn = (
            int(np.sum(guess & (truth == 1.0))),
            int(np.sum(guess & (truth == 0.0))),
            int(np.sum(~guess & (truth == 1.0))),
        )
        finals = {
            "accuracy": _finite(float(cumulative[-1])) if len(n) else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
            "log_loss": _finite(float(np.mean(np.where(truth == 1.0, -np.log(clamped), -np.log(1 - clamped)))))
            if len(n)
            else None,
        }
        y_true: list[Any] = [bool(t) for t in truth]
        y_pred: list[Any] = guess.tolist()
        score = p.tolist()
    else:
        error = p - truth
        cumulative = np.cumsum(np.abs(error)) / n
        finals = {
            "mae": _finite(float(cumulative[-1])) if len(n) else None,
            "rmse": _finite(float(np.sqrt(np.mean(error**2)))) if len(n) else None,
            "r2": _finite(float(1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2))) if len(n) > 1 else None,
        }
        y_true, y_pred, score = truth.tolist(), p.tolist(), [math.nan] * len(learned)
    seq = list(range(len(learned)))
    frame = _frame(
        task, model.name, events, arrivals, seq, learned.tolist(), y_true, y_pred, score, cumulative.tolist()
    )
    final = float(cumulative[-1]) if len(n) else 0.0
    return frame, _model_summary(model, len(events), len(learned), final, finals)


def _update(scores: dict[str, metrics.base.Metric], y: Any, guess: Any, proba: dict[str, float] | None) -> None:
    for name, metric in scores.items():
        if name == "log_loss":
            if proba is not None:
                # river's LogLoss takes the probability of True.
                metric.update(y, proba.get("true", 0.0))
        else:
            metric.update(y, guess)


def _score(task: str, guess: Any, proba: dict[str, float] | None) -> float:
    if proba is None:
        return math.nan
    if task == "binary":
        return float(proba.get("true", math.nan))
    return float(proba.get(class_key(guess), math.nan)) if guess is not None else math.nan


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _frame(
    task: str,
    name: str,
    events: Sequence[Event],
    arrivals: Sequence[int | None],
    seq: list[int],
    index: list[int],
    y_true: list[Any],
    y_pred: list[Any],
    score: list[float],
    cumulative: list[float],
) -> pd.DataFrame:
    truth: Any
    guesses: Any
    if task == "regression":
        truth = np.asarray(y_true, dtype=float)
        guesses = np.asarray([math.nan if g is None else g for g in y_pred], dtype=float)
        error = guesses - truth
        correct = np.full(len(seq), math.nan)
    else:
        truth = [class_key(y) for y in y_true]
        guesses = [None if g is None else class_key(g) for g in y_pred]
        error = np.full(len(seq), math.nan)
        correct = np.asarray(
            [math.nan if g is None else float(g == t) for g, t in zip(guesses, truth, strict=True)], dtype=float
        )
    return pd.DataFrame(
        {
            "seq": np.asarray(seq, dtype=np.int64),
            "model": name,
            "event_id": [events[i].event_id for i in index],
            "event_time_ms": np.asarray([events[i].time_ms for i in index], dtype=np.int64),
            "arrival_ms": np.asarray([arrivals[i] for i in index], dtype=np.int64),
            "y_true": truth,
            "y_pred": guesses,
            "score": np.asarray(score, dtype=float),
            "correct": correct,
            "error": error,
            "metric": np.asarray(cumulative, dtype=float),
        }
    )


def _merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    # Row order is (seq, model order): stable sort keeps the models in the order they were given.
    return table.sort_values("seq", kind="stable").reset_index(drop=True)
