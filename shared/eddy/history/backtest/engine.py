"""The backtest engine: a stream's history through the production model code, in event-time order.

Events are predicted in the order of their event time; each label is learned
when it would have arrived. The order is river's ``stream.simulate_qa``: before
an event at time ``t`` is predicted, every label due at or before ``t`` is
revealed, in order of arrival (ties in the order of their events), and the
labels still due at the end are revealed last. So the final metric is that of
``evaluate.progressive_val_score`` on the same sequence with the same delay.

Predicting and learning are the services' own functions
(:func:`eddy.ml.models.predict_batch` as inference calls it and
:func:`eddy.ml.models.learn` as learning does), the label is coerced as learning
coerces it, the first label of an event wins, and a label later than the
contract's ``allowed_lateness`` is not learned, as in production.

>>> from river import datasets
>>> from eddy.contracts.stream import load_contract
>>> from eddy.core.settings import REPO_ROOT
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from river import metrics

from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.history.backtest.events import Event, EventTable, Label
from eddy.ml.labels import LabelError, coerce_label
from eddy.ml.linear_kernel import LinearKernel
from eddy.ml.models import build_estimator, class_key, learn, predict_batch

# How label arrival is decided: the observed time, or the event time plus a fixed delay in ms.
OBSERVED = "observed"


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
    kinds, index = schedule_arrays(EventTable.of(events).times, arrivals)
    return list(zip(kinds.tolist(), index.tolist(), strict=True))


def schedule_arrays(times: np.ndarray, arrivals: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`schedule` as two arrays (kind, event position), sorted with numpy instead of a Python loop."""
    labelled = np.fromiter((a is not None for a in arrivals), bool, len(times))
    due = np.fromiter((0 if a is None else a for a in arrivals), np.int64, len(times))
    return _schedule(times, due, labelled)


def _schedule(times: np.ndarray, due_at: np.ndarray, labelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(times)
    positions = np.flatnonzero(labelled)
    due = np.maximum(due_at[positions], times[positions])
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
    table = EventTable.of(events)
    due, labelled = _arrivals(table.times, [labels.get(event_id) for event_id in table.ids], delay, lateness_ms)
    return [int(a) if ok else None for a, ok in zip(due.tolist(), labelled.tolist(), strict=True)]


def _arrivals(
    times: np.ndarray, found: Sequence[Label | None], delay: str | int, lateness_ms: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`arrivals_of` as arrays: when each label is learned (0 where none) and whether there is one."""
    n = len(times)
    labelled = np.fromiter((label is not None for label in found), bool, n)
    if delay == OBSERVED:
        due = np.fromiter((0 if label is None else label.arrived_ms for label in found), np.int64, n)
    else:
        due = times + int(delay)
    if lateness_ms is not None:
        labelled &= due - times <= lateness_ms
    return np.where(labelled, due, 0), labelled


def run_backtest(
    contract: StreamContract,
    events: Sequence[Event],
    labels: Mapping[str, Label],
    models: Sequence[BacktestModel],
    delay: str | int = OBSERVED,
    lateness_ms: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Predict every event and learn every label in the order they would have happened, for each model.

    ``events`` (a list of :class:`Event` or an :class:`EventTable`) must be in event-time order (ties
    broken as the caller wants: deterministically); ``lateness_ms`` defaults to the contract's
    ``allowed_lateness``. ``on_progress(done, planned)``, if given, is called now and then with the
    steps (predictions and labels, over all models) done so far.
    """
    task = contract.task
    lateness = contract.allowed_lateness_ms if lateness_ms is None else lateness_ms
    replayed = EventTable.of(events)
    found = list(map(labels.get, replayed.ids))
    times = replayed.times
    due, labelled = _arrivals(times, found, delay, lateness)
    kinds, index = _schedule(times, due, labelled)
    targets, unusable = _targets(task, found, labelled)
    steps = _Steps(kinds, index, due, labelled, times)
    frames, summaries, estimators = [], [], {}
    per_model = len(kinds)
    for k, model in enumerate(models):
        report = None if on_progress is None else _offset_progress(on_progress, k * per_model, len(models) * per_model)
        frame, summary = _run_one(task, model, replayed, steps, targets, report)
        if report is not None:
            report(per_model)
        frames.append(frame)
        summaries.append(summary)
        estimators[model.name] = model.estimator
    table = _merge(frames)
    summary = {
        "task": task,
        "metric": HEADLINE[task],
        "label_delay": delay if delay == OBSERVED else f"{int(delay)} ms",
        "data": {"events": len(replayed), "labels": sum(t is not None for t in targets), "unusable_labels": unusable},
        "models": summaries,
    }
    return BacktestResult(table, summary, estimators)


@dataclass(frozen=True)
class _Steps:
    """The schedule (kind, event position per step) and each event's time and label arrival, as arrays."""

    kinds: np.ndarray
    index: np.ndarray
    due: np.ndarray
    labelled: np.ndarray
    times: np.ndarray

    def ops(self) -> list[tuple[int, int]]:
        return list(zip(self.kinds.tolist(), self.index.tolist(), strict=True))


def _targets(task: str, found: Sequence[Label | None], labelled: np.ndarray) -> tuple[list[Any], int]:
    """Each event's label as learning coerces it; None where there is none or it is unusable (and how many)."""
    targets: list[Any] = [None] * len(found)
    unusable = 0
    for i in np.flatnonzero(labelled).tolist():
        label = found[i]
        if label is None:
            continue
        try:
            targets[i] = coerce_label(label.value, task)
        except LabelError:
            unusable += 1
    return targets, unusable


HEADLINE = {"binary": "accuracy", "multiclass": "accuracy", "regression": "mae"}


def _metric_set(task: str) -> dict[str, metrics.base.Metric]:
    if task == "regression":
        return {"mae": metrics.MAE(), "rmse": metrics.RMSE(), "r2": metrics.R2()}
    if task == "binary":
        return {"accuracy": metrics.Accuracy(), "f1": metrics.F1(), "log_loss": metrics.LogLoss()}
    return {"accuracy": metrics.Accuracy(), "macro_f1": metrics.MacroF1()}


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics a backtest reports for each model of a ``task`` stream, the headline first.

    >>> metric_names("binary"), metric_names("regression")
    (('accuracy', 'f1', 'log_loss'), ('mae', 'rmse', 'r2'))
    """
    return tuple(_metric_set(task))


def _offset_progress(on_progress: Callable[[int, int], None], before: int, planned: int) -> Callable[[int], None]:
    """Progress of one model's steps, reported as progress over all models'."""
    return lambda done: on_progress(before + done, planned)


# River's own path reports progress every this many steps (the kernel only once a model is done).
PROGRESS_STEPS = 20_000


def _run_one(
    task: str,
    model: BacktestModel,
    events: EventTable,
    steps: _Steps,
    targets: Sequence[Any],
    report: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    estimator, features = model.estimator, model.spec.features
    kernel = LinearKernel.of(estimator, features) if task in ("binary", "regression") else None
    matrix = events.matrix(features) if kernel is not None else None
    if kernel is not None and matrix is not None:
        return _run_native(task, model, kernel, matrix, events, steps, targets)
    ops = steps.ops()
    rows = [{f: record.get(f) for f in features} for record in events.records()]
    predicted: list[tuple[Any, dict[str, float] | None] | None] = [None] * len(events)
    headline = HEADLINE[task]
    scores = _metric_set(task)
    main = scores[headline]
    index: list[int] = []
    y_true: list[Any] = []
    y_pred: list[Any] = []
    score: list[float] = []
    cumulative: list[float] = []
    k, reported = 0, 0
    while k < len(ops):
        if report is not None and k - reported >= PROGRESS_STEPS:
            reported = k
            report(k)
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
        index.append(i)
        y_true.append(y)
        y_pred.append(guess)
        score.append(_score(task, guess, proba))
        cumulative.append(float(main.get()))
    learned = np.asarray(index, dtype=np.int64)
    columns = _outcome_columns(task, y_true, y_pred)
    frame = _frame(model.name, events, steps, learned, columns, np.asarray(score, dtype=float), cumulative)
    finals = {name: _finite(m.get()) for name, m in scores.items()}
    return frame, _model_summary(model, len(events), len(learned), float(main.get()), finals)


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


def _run_native(
    task: str,
    model: BacktestModel,
    kernel: LinearKernel,
    matrix: np.ndarray,
    events: EventTable,
    steps: _Steps,
    targets: Sequence[Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The same sequence through :class:`LinearKernel`: river's arithmetic, and its metrics computed at once."""
    y = np.fromiter((math.nan if t is None else float(t) for t in targets), np.float64, len(targets))
    # Unusable labels are not learned (production dead-letters them): drop their steps.
    keep = (steps.kinds == PREDICT) | ~np.isnan(y[steps.index])
    kinds, index = steps.kinds[keep], steps.index[keep]
    out = kernel.run(kinds, index, matrix, y)
    learned = index[kinds == LEARN]
    truth, p = y[learned], out[learned]
    n = np.arange(1, len(learned) + 1, dtype=np.float64)
    if task == "binary":
        # LogisticRegression answers {False: 1 - p, True: p}; the first most probable class wins.
        guess = p > 1.0 - p
        positive = truth == 1.0
        hits = guess == positive
        cumulative = np.cumsum(hits) / n
        clamped = np.clip(p, 1e-15, 1 - 1e-15)
        tp, fp, fn = int(np.sum(guess & positive)), int(np.sum(guess & ~positive)), int(np.sum(~guess & positive))
        finals = {
            "accuracy": _finite(float(cumulative[-1])) if len(n) else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
            "log_loss": _finite(float(np.mean(np.where(positive, -np.log(clamped), -np.log(1 - clamped)))))
            if len(n)
            else None,
        }
        keys = np.array(["false", "true"], dtype=object)
        columns = _Outcomes(keys[positive.astype(np.intp)], keys[guess.astype(np.intp)], hits.astype(float), None)
        score = p
    else:
        error = p - truth
        cumulative = np.cumsum(np.abs(error)) / n
        finals = {
            "mae": _finite(float(cumulative[-1])) if len(n) else None,
            "rmse": _finite(float(np.sqrt(np.mean(error**2)))) if len(n) else None,
            "r2": _finite(float(1 - np.sum(error**2) / np.sum((truth - truth.mean()) ** 2))) if len(n) > 1 else None,
        }
        columns = _Outcomes(truth, p, None, error)
        score = np.full(len(learned), math.nan)
    frame = _frame(model.name, events, steps, learned, columns, score, cumulative)
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


@dataclass(frozen=True)
class _Outcomes:
    """Per learned label: truth and prediction as the table writes them, and whether right or how far off."""

    y_true: Any
    y_pred: Any
    correct: np.ndarray | None
    error: np.ndarray | None


def _outcome_columns(task: str, y_true: list[Any], y_pred: list[Any]) -> _Outcomes:
    if task == "regression":
        truth = np.asarray(y_true, dtype=float)
        guesses = np.asarray([math.nan if g is None else g for g in y_pred], dtype=float)
        return _Outcomes(truth, guesses, None, guesses - truth)
    keys = [class_key(y) for y in y_true]
    guessed = [None if g is None else class_key(g) for g in y_pred]
    correct = np.asarray([math.nan if g is None else float(g == t) for g, t in zip(guessed, keys, strict=True)])
    return _Outcomes(keys, guessed, correct, None)


def _frame(
    name: str,
    events: EventTable,
    steps: _Steps,
    learned: np.ndarray,
    outcomes: _Outcomes,
    score: np.ndarray,
    cumulative: Any,
) -> pd.DataFrame:
    n = len(learned)
    ids = events.ids
    missing = np.full(n, math.nan)
    return pd.DataFrame(
        {
            "seq": np.arange(n, dtype=np.int64),
            "model": name,
            "event_id": [ids[i] for i in learned.tolist()],
            "event_time_ms": steps.times[learned],
            "arrival_ms": steps.due[learned],
            "y_true": outcomes.y_true,
            "y_pred": outcomes.y_pred,
            "score": np.asarray(score, dtype=float),
            "correct": missing if outcomes.correct is None else outcomes.correct,
            "error": missing if outcomes.error is None else outcomes.error,
            "metric": np.asarray(cumulative, dtype=float),
        }
    )


def _merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    table = pd.concat(frames, ignore_index=True)
    # Row order is (seq, model order): stable sort keeps the models in the order they were given.
    return table.sort_values("seq", kind="stable").reset_index(drop=True)
