"""``eddy.backtest``: a backtest in a notebook, on pandas DataFrames, through the production backtest engine.

``eddy backtest`` reads a stream's history from Kafka; this takes the history as
DataFrames instead and runs the same engine (``eddy.history.backtest.engine``):
every event predicted in event-time order by the services' own model code, each
label learned when it would have arrived.

>>> import pandas as pd
>>> import eddy
>>> events = pd.DataFrame({
...     "event_id": [f"e{i}" for i in range(400)],
...     "event_time_ms": range(0, 400_000, 1000),
...     "x0": [i % 10 for i in range(400)], "x1": 5.0, "x2": 5.0,
... })
>>> events["label"] = events["x0"] >= 5
>>> results = eddy.backtest(events, label_delay="30s")
>>> list(results.columns)
['seq', 'model', 'event_id', 'event_time_ms', 'arrival_ms', 'y_true', 'y_pred', 'score', 'correct', 'error', 'metric']
>>> len(results), results["model"].unique().tolist(), bool(results["metric"].iloc[-1] > 0.9)
(400, ['spec:default'], True)
>>> results.attrs["summary"]["metric"], results.attrs["summary"]["label_delay"]
('accuracy', '30000 ms')
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eddy.contracts.durations import ContractError, parse_duration_ms
from eddy.contracts.stream import ModelSpec, StreamContract, load_contract, load_contracts
from eddy.core.resources import demo_contract_path
from eddy.history.backtest.engine import OBSERVED, BacktestModel, run_backtest
from eddy.history.backtest.events import EventTable, Label
from eddy.ml.models import spec_from_json

LABEL_TIME = "label_time_ms"
"""The column of ``labels`` saying when each label arrived (as on ``S.feedback``)."""
SPEC_SUFFIXES = (".json", ".yaml", ".yml")

ContractLike = StreamContract | str | Path | None
ModelLike = str | Path | ModelSpec | BacktestModel


class BacktestError(ValueError):
    """Input a backtest cannot run on: says which argument, and what it should be."""


def backtest(
    events: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    *,
    contract: ContractLike = None,
    models: Sequence[ModelLike] | None = None,
    label_delay: str | int = OBSERVED,
) -> pd.DataFrame:
    """How ``models`` would have done on ``events``: one row per learned label and model, as ``eddy backtest``.

    Parameters
    ----------
    events
        One row per event, taken as valid (as on ``S.validated``): the contract's id field (``event_id``) and
        time field (``event_time_ms``, epoch ms or a datetime column), and the models' features. The first
        row of an id wins.
    labels
        ``event_id``, ``label`` and, for ``label_delay="observed"``, ``label_time_ms`` (when it arrived). None:
        the events' own label column (the contract's ``label.field``), which needs a fixed ``label_delay``.
    contract
        A contract file, a stream name (its contract in ``EDDY_CONTRACTS_DIR``), a loaded contract, or None for
        the demo stream's.
    models
        Contract model names (fresh), spec files (``.json``/``.yaml``, as ``eddy backtest --model``),
        ``ModelSpec`` or ``BacktestModel`` objects; None: the contract's champion.
    label_delay
        ``"observed"`` (each label at its ``label_time_ms``), or a fixed delay after the event: ms or a
        duration such as ``"30s"``.

    Returns
    -------
    pandas.DataFrame
        The engine's per-label table (``seq, model, event_id, ..., metric``: the running headline metric);
        ``.attrs["summary"]`` holds the summary ``eddy backtest`` prints (final metrics per model).

    Raises
    ------
    BacktestError
        For input that does not fit the contract or each other, saying which.
    """
    stream = resolve_contract(contract)
    delay = _delay(label_delay)
    chosen = (
        [resolve_model(m, stream) for m in models] if models is not None else [BacktestModel.fresh(stream.champion)]
    )
    if not chosen:
        raise BacktestError("models: give at least one model (or None for the contract's champion)")
    names = [m.name for m in chosen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BacktestError(f"models: {', '.join(twice)} given more than once; compare each model once")
    table = event_table(events, stream)
    found = label_map(labels if labels is not None else _own_labels(events, stream), delay)
    if not found:
        raise BacktestError("labels: there are none, so nothing can be learned or scored")
    result = run_backtest(stream, table, found, chosen, delay)
    out = result.table
    out.attrs["summary"] = {**result.summary, "stream": stream.name, "created_by": "eddy.backtest"}
    return out


def resolve_contract(contract: ContractLike) -> StreamContract:
    """A loaded contract from what ``backtest(contract=...)`` takes.

    >>> resolve_contract(None).name
    'demo'
    >>> resolve_contract("no-such-stream")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    eddy.api.BacktestError: contract: 'no-such-stream' is neither a contract file nor a stream of ...
    """
    if contract is None:
        return load_contract(demo_contract_path())
    if isinstance(contract, StreamContract):
        return contract
    path = Path(contract)
    if isinstance(contract, Path) or path.suffix in (".yaml", ".yml") or path.is_file():
        return load_contract(path)
    from eddy.core.settings import Settings

    directory = Settings.from_env().contracts_dir
    known = load_contracts(directory)
    if contract not in known:
        raise BacktestError(
            f"contract: {contract!r} is neither a contract file nor a stream of {directory} "
            f"(streams: {', '.join(sorted(known))})"
        )
    return known[contract]


def resolve_model(model: ModelLike, contract: StreamContract) -> BacktestModel:
    """One model of ``backtest(models=[...])``, starting fresh (a ``BacktestModel`` as it is)."""
    if isinstance(model, BacktestModel):
        return model
    if isinstance(model, ModelSpec):
        return BacktestModel.fresh(model)
    text = str(model)
    if isinstance(model, Path) or text.endswith(SPEC_SUFFIXES):
        return BacktestModel.fresh(_spec_file(Path(model)))
    if "@" in text:
        raise BacktestError(
            f"models: {text} is a registry version; its snapshot is on the stack's Kafka: "
            f"run `eddy backtest {contract.name} --model {text}`, or pass its spec"
        )
    names = [m.name for m in contract.models]
    if text not in names:
        raise BacktestError(f"models: {text!r} is not a model of {contract.name} ({', '.join(names)}) nor a spec file")
    return BacktestModel.fresh(contract.model(text))


def _spec_file(path: Path) -> ModelSpec:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
        return spec_from_json(json.dumps(doc))
    except OSError as exc:
        raise BacktestError(f"models: cannot read the spec file {path}: {exc}") from exc
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise BacktestError(f"models: {path} is not a model spec (name, features, pipeline): {exc}") from exc


def _delay(label_delay: str | int) -> str | int:
    if label_delay == OBSERVED:
        return OBSERVED
    if isinstance(label_delay, bool) or not isinstance(label_delay, int | str):
        raise BacktestError(f"label_delay: {label_delay!r} is not 'observed', ms or a duration like '30s'")
    if isinstance(label_delay, int):
        if label_delay < 0:
            raise BacktestError(f"label_delay: {label_delay} ms is negative")
        return label_delay
    if label_delay.isdigit():
        return int(label_delay)
    try:
        return parse_duration_ms(label_delay, "label_delay")
    except ContractError as exc:
        raise BacktestError(f"label_delay: {exc}") from exc


def event_table(events: pd.DataFrame, contract: StreamContract) -> EventTable:
    """The events in replay order (event time, ties by id), the first row of each id kept."""
    _need_frame(events, "events")
    id_field, time_field = contract.id_field, contract.time_field
    _need_columns(events, "events", {id_field: "the contract's id_field", time_field: "the contract's time_field"})
    if events[id_field].isna().any():
        raise BacktestError(f"events: column {id_field!r} has missing ids")
    frame = events.drop_duplicates(subset=id_field, keep="first")
    ids = frame[id_field].astype(str).tolist()
    times = _epoch_ms(frame[time_field], f"events: column {time_field!r}")
    order = np.lexsort((np.array(ids, dtype=object).argsort(kind="stable").argsort(), times))
    records = [_native(row) for row in frame.to_dict("records")]
    return EventTable([ids[i] for i in order.tolist()], times[order], [records[i] for i in order.tolist()])


def label_map(labels: pd.DataFrame, delay: str | int) -> dict[str, Label]:
    """Each event's first label (the earliest to arrive), by event id."""
    _need_frame(labels, "labels")
    _need_columns(labels, "labels", {"event_id": "the event each label is for", "label": "the label"})
    if LABEL_TIME in labels.columns:
        arrived = _epoch_ms(labels[LABEL_TIME], f"labels: column {LABEL_TIME!r}")
    elif delay == OBSERVED:
        raise BacktestError(
            f"labels: label_delay='observed' needs a {LABEL_TIME!r} column (when each label arrived); "
            "or pass a fixed label_delay such as '30s'"
        )
    else:
        arrived = np.zeros(len(labels), dtype=np.int64)  # unused: a fixed delay times every label
    found: dict[str, Label] = {}
    for event_id, value, at in zip(labels["event_id"].astype(str), labels["label"], arrived.tolist(), strict=True):
        value = _native_value(value)
        if value is None:
            continue
        seen = found.get(event_id)
        if seen is None or at < seen.arrived_ms:
            found[event_id] = Label(value, at)
    return found


def _own_labels(events: pd.DataFrame, contract: StreamContract) -> pd.DataFrame:
    _need_frame(events, "events")
    field = contract.label_field
    if field not in events.columns:
        raise BacktestError(f"labels: none given, and events have no {field!r} column (the contract's label field)")
    return pd.DataFrame({"event_id": events[contract.id_field], "label": events[field]})


def _need_frame(frame: object, name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise BacktestError(f"{name}: a pandas DataFrame, not {type(frame).__name__}")


def _need_columns(frame: pd.DataFrame, name: str, needed: Mapping[str, str]) -> None:
    missing = [f"{column!r} ({why})" for column, why in needed.items() if column not in frame.columns]
    if missing:
        raise BacktestError(f"{name}: no column {', '.join(missing)}; columns: {', '.join(map(str, frame.columns))}")


def _epoch_ms(column: pd.Series, what: str) -> np.ndarray:
    """Epoch milliseconds of a column of integers or datetimes (naive datetimes are UTC)."""
    if column.isna().any():
        raise BacktestError(f"{what} has missing times")
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        return np.asarray((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1), dtype=np.int64)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise BacktestError(f"{what} must hold epoch milliseconds or datetimes, not {column.dtype}")
    values = column.to_numpy(dtype=np.float64)
    if not np.array_equal(values, np.floor(values)):
        raise BacktestError(f"{what} must hold whole milliseconds")
    return values.astype(np.int64)


def _native(row: Mapping[Hashable, Any]) -> dict[str, Any]:
    """A record as the services see one: plain Python values, a missing value (NaN, NaT, None) absent."""
    out = {}
    for key, value in row.items():
        value = _native_value(value)
        if value is not None:
            out[str(key)] = value
    return out


def _native_value(value: Any) -> Any:
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _native_value(value.item())
    return value
