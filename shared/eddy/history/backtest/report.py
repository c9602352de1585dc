"""The report of a backtest: one self-contained HTML page (inline CSS and SVG, no fetch, no script needed).

The page has the models side by side (the best one highlighted), the headline metric over
the replay (cumulative, as the engine computed it, and over a sliding window of labels),
a reliability diagram per model for classification and the distribution of the errors for
regression, and a footer saying what was replayed (label delay, data range, offsets).

Input is the engine's results table and summary (see ``shared/eddy/history/backtest/engine.py``); keys
this module does not know are shown in the footer rather than dropped. The page is a pure
function of its input, so the same backtest always gives the same bytes. A Content Security
Policy forbids every fetch and every script but the page's own few lines, which only report
errors (for the browser test) and would not be missed: the page is complete without them.

>>> import pandas as pd
>>> results = pd.DataFrame({"seq": [0, 1], "model": "m", "y_true": ["true", "false"], "y_pred": ["true", "true"],
...                         "score": [0.9, 0.6], "correct": [1.0, 0.0], "error": float("nan"), "metric": [1.0, 0.5]})
>>> summary = {"stream": "demo", "task": "binary", "metric": "accuracy",
...            "models": [{"model": "m", "start": "fresh", "labels": 2, "final_metric": 0.5}]}
>>> page = render_report(results, summary)
>>> page.startswith("<!doctype html>") and 'data-chart="metric-cumulative"' in page
True
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eddy.history.backtest import svg

# Metrics where a smaller value is better; any other metric is taken as "higher is better".
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "rmsle", "mape", "smape", "log_loss", "cross_entropy", "brier"})
CLASSIFICATION = ("binary", "multiclass")
POSITIVE = "true"  # the positive class of a binary stream, as the engine writes it
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 40
ERROR_QUANTILES = (0.005, 0.995)  # the error histogram's range: a few wild errors must not squash it
MAX_OFFSET_ROWS = 200
KNOWN_KEYS = frozenset({"stream", "task", "metric", "label_delay", "data", "models", "created_by"})
KNOWN_DATA_KEYS = frozenset({"from", "until", "events", "labels", "offsets"})


def default_window(labels: int) -> int:
    """The sliding window (in labels) of the windowed metric: 2 % of the labels, at least 100.

    >>> default_window(1000), default_window(1_000_000)
    (100, 20000)
    """
    return max(100, labels // 50)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (errors and losses).

    >>> lower_is_better("mae"), lower_is_better("accuracy"), lower_is_better("pinball_loss")
    (True, False, True)
    """
    name = metric.lower()
    return name in LOWER_IS_BETTER or name.endswith(("_loss", "_error"))


def render_report(results: pd.DataFrame, summary: Mapping[str, Any], window: int | None = None) -> str:
    """The backtest's report as one HTML document.

    Parameters
    ----------
    results
        The engine's results table: one row per label answered per model (may be empty).
    summary
        The engine's summary: stream, task, metric, label delay, data and one entry per model.
    window
        Labels per window of the windowed metric; default :func:`default_window` of the labels.

    Returns
    -------
    str
        A complete ``<!doctype html>`` page that needs nothing else to display.
    """
    task = _task(summary, results)
    metric = str(summary.get("metric") or ("mae" if task == "regression" else "accuracy"))
    models = _models(results, summary, task)
    data = _mapping(summary.get("data"))
    given = data.get("labels")
    labels = given if isinstance(given, int) else max((m.rows for m in models), default=0)
    win = max(1, int(window)) if window is not None else default_window(labels)
    stream = str(summary.get("stream") or "unnamed stream")
    answered = any(m.rows for m in models)

    sections = [_summary_section(models, metric, task)]
    if answered:
        sections.append(_quality_section(models, metric, task, win))
        if task in CLASSIFICATION:
            sections.append(_calibration_section(models, task))
        else:
            sections.append(_error_section(models))
    else:
        sections.append(
            '<section id="charts"><h2>Quality over time</h2><p class="empty-note" data-empty="results">'
            "This backtest answered no labels: there is nothing to plot.</p></section>"
        )
    sections.append(_specs_section(summary))
    subtitle = " · ".join(
        escape(part)
        for part in (task, f"headline metric {metric}", _data_range(data), f"{_count(labels)} labels", f"window {win}")
    )
    return "".join(
        [
            "<!doctype html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            f"<title>eddy backtest · {escape(stream)}</title>",
            '<link rel="icon" href="data:,">',
            f"<style>{CSS}</style><script>{SCRIPT}</script></head>\n",
            f'<body data-task="{escape(task)}" data-models="{len(models)}" data-window="{win}">',
            '<pre id="js-errors" class="banner js-errors" role="alert" hidden></pre>',
            f'<header class="top"><h1>eddy <span>backtest</span> · {escape(stream)}</h1>',
            f'<span class="status">{subtitle}</span></header>\n<main>',
            *(s + "\n" for s in sections),
            "</main>\n",
            _footer(summary, data),
            "</body></html>\n",
        ]
    )


def write_report(
    path: str | Path, results: pd.DataFrame, summary: Mapping[str, Any], window: int | None = None
) -> Path:
    """Write :func:`render_report`'s page to ``path`` (UTF-8, parent folders created) and return the path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = write_report(Path(tmp) / "out" / "report.html", pd.DataFrame(), {"stream": "demo"})
    ...     "nothing to plot" in written.read_text()
    True
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(results, summary, window), encoding="utf-8")
    return target


# ---------- the data of each model ----------


@dataclass(frozen=True)
class _Model:
    """One model's summary entry and its rows of the results, as float arrays in label order."""

    name: str
    color: str
    entry: Mapping[str, Any]
    seq: np.ndarray
    metric: np.ndarray
    correct: np.ndarray
    error: np.ndarray
    score: np.ndarray
    observed: np.ndarray  # the calibration outcome: y_true is the positive class (binary) or correct (multiclass)
    has_pred: np.ndarray  # bool: the model gave a prediction for this label

    @property
    def rows(self) -> int:
        return len(self.seq)

    @property
    def predicted(self) -> int:
        return int(self.has_pred.sum())


def _task(summary: Mapping[str, Any], results: pd.DataFrame) -> str:
    task = summary.get("task")
    if isinstance(task, str) and task:
        return task
    # an older or hand-made summary: guess from the labels themselves
    if "y_true" in results and len(results):
        if pd.api.types.is_numeric_dtype(results["y_true"]) and not pd.api.types.is_bool_dtype(results["y_true"]):
            return "regression"
        return "binary" if results["y_true"].nunique(dropna=True) <= 2 else "multiclass"
    return "unknown"


def _models(results: pd.DataFrame, summary: Mapping[str, Any], task: str) -> list[_Model]:
    entries: dict[str, Mapping[str, Any]] = {}
    for entry in summary.get("models") or []:
        if isinstance(entry, Mapping) and entry.get("model") is not None:
            entries.setdefault(str(entry["model"]), entry)
    has_rows = len(results) > 0 and "model" in results
    names = list(entries)
    groups: dict[str, np.ndarray] = {}
    if has_rows:
        model_col = results["model"].astype(str)
        groups = {str(k): np.asarray(v) for k, v in model_col.groupby(model_col, sort=False).indices.items()}
        names += [n for n in pd.unique(model_col) if n not in entries]
    frame = results if has_rows else pd.DataFrame()
    columns = {c: _floats(frame, c) for c in ("seq", "metric", "correct", "error", "score")}
    has_pred = frame["y_pred"].notna().to_numpy() if "y_pred" in frame else np.zeros(len(frame), dtype=bool)
    observed = _observed(frame, task, columns["correct"])
    models = []
    for i, name in enumerate(names):
        rows = groups.get(name, np.empty(0, dtype=np.int64))
        seq = columns["seq"][rows]
        if len(seq) > 1 and not bool(np.all(np.diff(seq) >= 0)):
            rows = rows[np.argsort(seq, kind="stable")]
        models.append(
            _Model(
                name=name,
                color=svg.color(i),
                entry=entries.get(name, {}),
                seq=columns["seq"][rows],
                metric=columns["metric"][rows],
                correct=columns["correct"][rows],
                error=columns["error"][rows],
                score=columns["score"][rows],
                observed=observed[rows],
                has_pred=has_pred[rows],
            )
        )
    return models


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), math.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=math.nan)


def _observed(frame: pd.DataFrame, task: str, correct: np.ndarray) -> np.ndarray:
    if task != "binary" or "y_true" not in frame:
        return correct
    truth = frame["y_true"]
    if pd.api.types.is_bool_dtype(truth):
        positive = truth.to_numpy(dtype=bool)
    else:
        positive = truth.isin([POSITIVE, POSITIVE.capitalize(), True]).to_numpy()
    return np.where(truth.notna().to_numpy(), positive.astype(float), math.nan)


# ---------- sections ----------


def _summary_section(models: Sequence[_Model], metric: str, task: str) -> str:
    extra: list[str] = []
    for m in models:
        for name in _mapping(m.entry.get("metrics")):
            if name != metric and name not in extra:
                extra.append(str(name))
    # a model that never predicted has a metric of nothing (river says 0): not a measurement, not the best
    silent = {m.name for m in models if m.rows and not m.predicted}
    finals = {m.name: math.nan if m.name in silent else _number(m.entry.get("final_metric")) for m in models}
    eligible = {m.name: finals[m.name] for m in models if m.predicted and math.isfinite(finals[m.name])}
    best: set[str] = set()
    if len(models) > 1 and eligible:
        target = (min if lower_is_better(metric) else max)(eligible.values())
        best = {name for name, v in eligible.items() if v == target}
    direction = "lower is better" if lower_is_better(metric) else "higher is better"
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ("model", "start", "events", "labels", "predicted", f"{metric} (final)", *extra)
    )
    body = []
    for m in models:
        events, labels = m.entry.get("events"), m.entry.get("labels", m.rows)
        badges = ""
        if m.name in best:
            badges += ' <span class="badge best">best</span>'
        if m.rows and not m.predicted:
            badges += ' <span class="badge bad">never predicted</span>'
        share = f"{m.predicted / m.rows:.1%}" if m.rows else "—"
        metrics = _mapping(m.entry.get("metrics"))
        cells = [
            f'<td class="name"><span class="swatch" data-color="{m.color}"></span>{escape(m.name)}{badges}</td>',
            f"<td>{escape(str(m.entry.get('start') or '—'))}</td>",
            f'<td class="num">{_count(events)}</td>',
            f'<td class="num">{_count(labels)}</td>',
            f'<td class="num">{share}</td>',
            f'<td class="num headline">{_metric(finals[m.name])}</td>',
            *(f'<td class="num">{_metric(None if m.name in silent else metrics.get(name))}</td>' for name in extra),
        ]
        classes = " ".join(["model", *(["best"] if m.name in best else []), *(["silent"] if m.name in silent else [])])
        body.append(f'<tr class="{classes}" data-model="{escape(m.name)}">{"".join(cells)}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{6 + len(extra)}" class="none">no models in this backtest</td></tr>')
    return (
        f'<section id="summary"><h2>Models <small>{escape(task)} · {escape(metric)}: {direction}</small></h2>'
        f'<div class="table-wrap"><table data-table="models"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _quality_section(models: Sequence[_Model], metric: str, task: str, window: int) -> str:
    regression = task not in CLASSIFICATION
    cumulative = []
    windowed = []
    for m in models:
        # before a model's first prediction its cumulative metric is river's empty value, not a measurement
        started = np.cumsum(m.has_pred) > 0
        cumulative.append(svg.Series(m.name, m.seq[started], m.metric[started], m.color))
        values = np.abs(m.error) if regression else m.correct
        finite = int(np.isfinite(values).sum())
        rolling = pd.Series(values).rolling(window, min_periods=max(1, min(window, finite))).mean().to_numpy()
        windowed.append(svg.Series(m.name, m.seq, rolling, m.color))
    seqs = [m.seq[np.isfinite(m.seq)] for m in models]
    spans = [(float(s.min()), float(s.max())) for s in seqs if s.size]
    # both charts on the same x axis, from the first label on, although a window fills only later
    x_range = (min(lo for lo, _ in spans), max(hi for _, hi in spans)) if spans else None
    windowed_name = "MAE" if regression else "accuracy"
    charts = [
        _figure(
            f"{metric}, cumulative",
            "after each label, over all labels so far",
            svg.line_chart(
                cumulative, chart="metric-cumulative", x_label="labels (seq)", y_label=metric, x_range=x_range
            ),
        ),
        _figure(
            f"{windowed_name}, windowed",
            f"over the last {window:,} labels of each model",
            svg.line_chart(
                windowed,
                chart="metric-windowed",
                x_label="labels (seq)",
                x_range=x_range,
                y_label=windowed_name,
                empty_text="no predictions",
            ),
        ),
    ]
    return f'<section id="charts"><h2>Quality over time</h2><div class="charts">{"".join(charts)}</div></section>'


def _calibration_section(models: Sequence[_Model], task: str) -> str:
    binary = task == "binary"
    figures = []
    for m in models:
        bins = svg.calibration_bins(m.score, m.observed, CALIBRATION_BINS)
        n = sum(b.count for b in bins)
        ece = svg.expected_calibration_error(bins)
        note = f"ECE {ece:.3f} over {n:,} labels" if bins else "no probabilities"
        chart = svg.reliability_diagram(
            bins,
            chart="calibration",
            name=m.name,
            series_color=m.color,
            x_label=f"predicted P({POSITIVE})" if binary else "confidence of the predicted class",
            y_label=f"share {POSITIVE}" if binary else "share correct",
        )
        figures.append(_figure(m.name, note, chart, model=m.name, wide=False))
    what = (
        f"predicted probability of {POSITIVE!r} against how often it was {POSITIVE!r}"
        if binary
        else "confidence in the predicted class against how often it was right"
    )
    return (
        f'<section id="calibration"><h2>Calibration <small>{escape(what)}; dot area ~ labels</small></h2>'
        f'<div class="charts small">{"".join(figures)}</div></section>'
    )


def _error_section(models: Sequence[_Model]) -> str:
    finite = [m.error[np.isfinite(m.error)] for m in models]
    pooled = np.concatenate(finite) if finite else np.empty(0)
    value_range = None
    if pooled.size:
        lo, hi = np.quantile(pooled, ERROR_QUANTILES)
        value_range = (float(lo), float(hi))
    chart = svg.histogram(
        [svg.Sample(m.name, e, m.color) for m, e in zip(models, finite, strict=True)],
        chart="error-histogram",
        bins=HISTOGRAM_BINS,
        value_range=value_range,
        x_label="error (prediction - truth)",
        y_label="share of the model's labels",
        empty_text="no predictions",
    )
    rows = []
    for m, e in zip(models, finite, strict=True):
        stats = [float(e.mean()), float(np.median(np.abs(e))), float(np.quantile(np.abs(e), 0.95))] if e.size else []
        cells = "".join(f'<td class="num">{_metric(v)}</td>' for v in stats) or '<td colspan="3" class="none">—</td>'
        rows.append(f'<tr data-model="{escape(m.name)}"><td>{escape(m.name)}</td>{cells}</tr>')
    table = (
        '<div class="table-wrap"><table data-table="errors"><thead><tr><th>model</th><th>bias (mean error)</th>'
        f"<th>median |error|</th><th>p95 |error|</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    clipped = "tails beyond the 0.5 and 99.5 percentiles fall in the edge bins"
    return (
        '<section id="errors"><h2>Errors</h2>'
        f'<div class="charts">{_figure("error distribution", clipped, chart)}</div>{table}</section>'
    )


def _specs_section(summary: Mapping[str, Any]) -> str:
    items = []
    for entry in summary.get("models") or []:
        if not isinstance(entry, Mapping):
            continue
        spec = entry.get("spec")
        text = _pretty(spec)
        other = {k: v for k, v in entry.items() if k not in {"model", "spec", "start", "events", "labels"}}
        items.append(
            f'<details data-model="{escape(str(entry.get("model")))}"><summary>{escape(str(entry.get("model")))}'
            f'</summary><pre>{escape(text)}</pre><pre class="muted">{escape(_json(other))}</pre></details>'
        )
    if not items:
        return ""
    return f'<section id="specs"><h2>Model specs</h2>{"".join(items)}</section>'


def _footer(summary: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    rows = [
        ("label delay", escape(str(summary.get("label_delay") or "—"))),
        (
            "data",
            escape(f"{_data_range(data)}; {_count(data.get('events'))} events, {_count(data.get('labels'))} labels"),
        ),
    ]
    rows += [(f"data.{k}", escape(_json(v))) for k, v in data.items() if k not in KNOWN_DATA_KEYS]
    rows.append(("offsets", _offsets(data.get("offsets"))))
    rows += [(k, escape(_json(v))) for k, v in summary.items() if k not in KNOWN_KEYS]
    rows.append(("created by", escape(str(summary.get("created_by") or "—"))))
    body = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<footer id="provenance"><dl>{body}</dl></footer>\n'


def _offsets(offsets: Any) -> str:
    if not offsets:
        return "—"
    if not isinstance(offsets, Mapping):
        return f'<span class="mono">{escape(_json(offsets))}</span>'
    flat = list(_flatten(offsets, ()))
    rows = "".join(
        f'<tr><td class="mono">{escape(" / ".join(path))}</td><td class="mono">{escape(_json(value))}</td></tr>'
        for path, value in flat[:MAX_OFFSET_ROWS]
    )
    more = f'<p class="muted">… and {len(flat) - MAX_OFFSET_ROWS:,} more</p>' if len(flat) > MAX_OFFSET_ROWS else ""
    return f'<table data-table="offsets">{rows}</table>{more}'


def _flatten(value: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, inner in value.items():
        # a mapping of plain values ({"first": 0, "last": 99}) is one row; deeper ones are unfolded
        if isinstance(inner, Mapping) and any(isinstance(v, Mapping | list | tuple) for v in inner.values()):
            yield from _flatten(inner, (*path, str(key)))
        else:
            yield (*path, str(key)), inner


# ---------- small helpers ----------


def _figure(title: str, note: str, chart: str, model: str | None = None, wide: bool = True) -> str:
    attr = f' data-model="{escape(model)}"' if model is not None else ""
    return (
        f'<figure class="chart{"" if wide else " small"}"{attr}><figcaption>{escape(title)} '
        f"<small>{escape(note)}</small></figcaption>{chart}</figure>"
    )


def _data_range(data: Mapping[str, Any]) -> str:
    start, end = data.get("from"), data.get("until")
    if start is None and end is None:
        return "all history"
    return f"from {start if start is not None else 'the beginning'} until {end if end is not None else 'the end'}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _metric(value: Any) -> str:
    number = _number(value)
    return f"{number:.4f}" if math.isfinite(number) else "—"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def _pretty(spec: Any) -> str:
    # the engine writes a spec as one line of JSON: indent it to be read; other text as it is
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return spec
    return json.dumps(spec, indent=2, default=str, ensure_ascii=False)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


SCRIPT = (
    # Only reports errors on the page (as the dashboard does, for the browser test) and marks it ready.
    "(function(){var pending=[];"
    "function report(m){var box=document.getElementById('js-errors');"
    "if(!box){pending.push(m);return;}box.hidden=false;box.textContent+=m+'\\n';}"
    "window.addEventListener('error',function(e){report(e.message?e.message+' ('+e.filename+':'+e.lineno+')'"
    ":'failed to load '+((e.target&&(e.target.src||e.target.href))||'a resource'));},true);"
    "window.addEventListener('unhandledrejection',function(e){report('unhandled rejection: '+e.reason);});"
    "document.addEventListener('securitypolicyviolation',function(e){"
    "report('blocked by the page policy: '+e.violatedDirective+' '+e.blockedURI);});"
    "document.addEventListener('DOMContentLoaded',function(){pending.splice(0).forEach(report);"
    "document.body.setAttribute('data-ready','true');});})();"
)
CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#dde2e8;--bg:#f5f7fa;--card:#fff;--bad:#d62728;--bad-bg:#fde8e8;
--good:#2ca02c;--good-bg:#e3f4e3;font-family:system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif;
font-size:14px;color:var(--fg);background:var(--bg)}
body{margin:0}main{padding:0 20px 24px}
header.top{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 20px;padding:12px 20px;
background:var(--fg);color:#fff}
header.top h1{margin:0;font-size:18px}header.top h1 span{font-weight:400;opacity:.75}
.status{opacity:.9;font-variant-numeric:tabular-nums}
.banner{margin:0;padding:10px 20px;font-weight:600}.js-errors{background:#fff3cd;color:#7a5200;white-space:pre-wrap}
section{margin-top:18px}
h2{font-size:15px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
h2 small{text-transform:none;letter-spacing:0;font-weight:400;margin-left:8px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px;margin-top:12px}
.charts.small{grid-template-columns:repeat(auto-fill,minmax(300px,1fr))}
figure.chart{margin:0;padding:10px 12px 8px;background:var(--card);border:1px solid var(--line);border-radius:6px}
figcaption{font-weight:600;margin-bottom:4px;overflow-wrap:anywhere}
figcaption small{font-weight:400;color:var(--muted);margin-left:6px}
figure.chart svg{display:block;width:100%;height:auto}
.table-wrap{overflow-x:auto}.charts+.table-wrap{margin-top:12px}
table{border-collapse:collapse;background:var(--card);border:1px solid var(--line);min-width:50%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.none{color:var(--muted);font-style:italic}
td.name{font-weight:600;max-width:420px;overflow:hidden;text-overflow:ellipsis}
tr.best td{background:var(--good-bg)}tr.best td.headline{color:#1f6f1f;font-weight:700}
tr.silent td{color:var(--muted)}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:var(--line);margin-left:6px}
.badge.best{background:var(--good);color:#fff}.badge.bad{background:var(--bad);color:#fff}
.swatch{display:inline-block;width:14px;height:4px;border-radius:2px;margin-right:8px;vertical-align:middle}
.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}.muted{color:var(--muted)}
.empty-note{color:var(--muted);font-style:italic;margin:8px 0}
details{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px 12px;margin-bottom:6px}
summary{cursor:pointer;font-weight:600}details pre{margin:6px 0;white-space:pre-wrap;font-size:12px}
footer{margin:8px 20px 20px;padding-top:10px;border-top:1px solid var(--line);color:var(--muted);font-size:13px}
footer dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
footer dt{font-weight:600}footer dd{margin:0;overflow-wrap:anywhere}
footer table{min-width:0}footer td{padding:2px 8px}
""".strip()
# colour chips without style attributes (the CSP forbids them): the palette is fixed, so is this CSS
CSS += "".join(f'\n.swatch[data-color="{c}"]{{background:{c}}}' for c in svg.PALETTE)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# No fetch of any kind; only this module's own style and script run (a hash, not 'unsafe-inline',
# so even a bug in the escaping could not run a user's script).
CSP = (
    f"default-src 'none'; style-src {_sha256(CSS)}; script-src {_sha256(SCRIPT)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
