"""A tiny SVG chart kit for static reports: line charts, histograms and reliability diagrams.

No plotting library, no script, no external asset (numpy, already a dependency, does
the arithmetic): each chart function returns one ``<svg>`` element as a string, ready to
be inlined in an HTML page. The output is a pure function of the input, with every
coordinate written with a fixed precision, so a report can be diffed and tested as text.
Long series are thinned to at most ``max_points`` points each, so a chart of a million
labels stays a few tens of kilobytes. All text (series names come from users) is escaped.

Every ``<svg>`` carries ``data-chart`` (the name given by the caller) and ``data-points``
(how many marks it drew: 0 means an empty chart, which says so in its middle).

>>> svg = line_chart([Series("a<b", [0, 1, 2], [0.5, 0.7, 0.6])], chart="demo")
>>> svg.startswith('<svg') and 'data-chart="demo"' in svg and 'data-points="3"' in svg
True
>>> "a&lt;b" in svg and "a<b" not in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import numpy.typing as npt

# The monitoring dashboard's palette, so a model looks the same in both places.
PALETTE: tuple[str, ...] = ("#6a3d9a", "#ff7f00", "#1b9e77", "#e7298a", "#8c6d31", "#17becf", "#7f7f7f", "#bcbd22")
MAX_POINTS = 1000
WIDTH = 640
HEIGHT = 300
# Left leaves room for tick labels like "0.875" or "1.2M"; bottom for ticks and the axis label.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 18, 14, 44
LEGEND_ROW = 18
CHAR_W = 6.6  # a rough width of one 12 px character: enough to lay out a legend without a font
MAX_NAME = 48
# Colours as attributes, not CSS classes: a chart must look right outside the report's stylesheet too.
GRID, AXIS, MUTED = "#eef1f4", "#9aa4b0", "#5f6b7a"


def color(index: int) -> str:
    """The palette's colour for the ``index``-th series (cycling).

    >>> color(0), color(len(PALETTE))
    ('#6a3d9a', '#6a3d9a')
    """
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """A named line: ``y`` against ``x``; non-finite points are left out. ``color`` defaults to the palette."""

    name: str
    x: npt.ArrayLike
    y: npt.ArrayLike
    color: str | None = None


@dataclass(frozen=True)
class Sample:
    """A named set of values for a histogram; non-finite values are left out."""

    name: str
    values: npt.ArrayLike
    color: str | None = None


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability diagram: predictions in ``[lower, upper)`` (the last bin includes 1)."""

    lower: float
    upper: float
    predicted: float  # mean predicted probability of the bin's predictions
    observed: float  # share of them whose outcome was positive
    count: int


def downsample(x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` evenly spaced points of ``(x, y)``, always with the first and the last.

    >>> xs, ys = downsample(range(10), range(10), max_points=4)
    >>> xs.tolist()
    [0.0, 3.0, 6.0, 9.0]
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) <= max_points:
        return xs, ys
    keep = np.unique(np.linspace(0, len(xs) - 1, max(2, max_points)).round().astype(np.int64))
    return xs[keep], ys[keep]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2, 2.5 or 5 times a power of ten) within ``[lo, hi]``.

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(3, 997)
    [200.0, 400.0, 600.0, 800.0]
    """
    step = _step(lo, hi, count)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


def format_number(value: float, step: float | None = None, magnitude: float = 0.0) -> str:
    """``value`` written as compactly as its precision (``step``, e.g. a tick spacing) allows.

    ``magnitude`` is the largest value written alongside (on the same axis), so that all
    of them share one unit suffix.

    >>> format_number(250000, 50000), format_number(1_200_000, 200_000), format_number(0.875, 0.025)
    ('250k', '1.2M', '0.875')
    >>> format_number(5000, 5000), format_number(5000, 5000, magnitude=15000)
    ('5000', '5k')
    >>> format_number(float("nan"))
    '—'
    """
    if not math.isfinite(value):
        return "—"
    scale, suffix = 1.0, ""
    size = max(abs(value), abs(step or 0.0), abs(magnitude))
    if size >= 1e9:
        scale, suffix = 1e9, "G"
    elif size >= 1e6:
        scale, suffix = 1e6, "M"
    elif size >= 1e4:
        scale, suffix = 1e3, "k"
    if step is None:
        text = f"{value / scale:.4g}" if suffix else f"{value:.4g}"
    else:
        decimals = max(0, -math.floor(math.log10(step / scale) + 1e-9)) if step > 0 else 0
        # 2.5 * 10^k steps need one digit more than their power of ten
        if step > 0 and round(step / scale / 10**-decimals, 6) % 1:
            decimals += 1
        text = f"{value / scale:.{decimals}f}"
    return "0" if text.strip("-0.") == "" else text + suffix


def line_chart(
    series: Sequence[Series],
    *,
    chart: str,
    x_label: str = "",
    y_label: str = "",
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    max_points: int = MAX_POINTS,
    empty_text: str = "no data",
) -> str:
    """Lines of several named series on shared axes, with a legend underneath.

    ``x_range`` fixes the x axis (else it spans the data), so charts side by side can
    share it; ``y_range`` fixes the y axis (else it fits the data, rounded out to its
    ticks). Each series is thinned to ``max_points`` and ends in a dot at its last value.

    >>> svg = line_chart([Series("m", range(5000), [i / 5000 for i in range(5000)])], chart="c", max_points=100)
    >>> 'data-points="100"' in svg
    True
    """
    prepared = []
    for i, s in enumerate(series):
        xs, ys = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
        finite = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = downsample(xs[finite], ys[finite], max_points)
        prepared.append((s.name, s.color or color(i), xs, ys))
    all_x = np.concatenate([p[2] for p in prepared]) if prepared else np.empty(0)
    all_y = np.concatenate([p[3] for p in prepared]) if prepared else np.empty(0)
    legend = [(name, col, "" if len(xs) else "no data") for name, col, xs, _ in prepared]
    frame = _Frame(width, height, legend)
    drawn = int(all_x.size)
    if drawn == 0:
        return frame.render(chart, 0, [frame.empty(empty_text)], x_label, y_label)
    frame.scale_x(*(x_range if x_range is not None else (float(all_x.min()), float(all_x.max()))), pad=False)
    lo, hi = y_range if y_range is not None else (float(all_y.min()), float(all_y.max()))
    frame.scale_y(lo, hi, pad=y_range is None)
    body = []
    for name, col, xs, ys in prepared:
        if not len(xs):
            continue
        px, py = frame.px(xs), frame.py(ys)
        label = escape(name)
        body.append(
            f'<path class="series" data-series="{label}" stroke="{col}" fill="none" stroke-width="2" '
            f'stroke-linejoin="round" d="{_path(px, py)}"><title>{label}</title></path>'
        )
        body.append(f'<circle class="last" cx="{px[-1]:.1f}" cy="{py[-1]:.1f}" r="3" fill="{col}"/>')
    return frame.render(chart, drawn, body, x_label, y_label)


def histogram(
    samples: Sequence[Sample],
    *,
    chart: str,
    bins: int = 30,
    value_range: tuple[float, float] | None = None,
    x_label: str = "",
    y_label: str = "share of values",
    width: int = WIDTH,
    height: int = HEIGHT,
    empty_text: str = "no data",
) -> str:
    """Overlaid step histograms on shared bins, each as the share of its own values (so sizes do not matter).

    Values outside ``value_range`` (default: all values' range) are counted in the edge
    bins, so a few outliers widen nothing.

    >>> svg = histogram([Sample("a", [0, 1, 1, 2]), Sample("b", [1, 2, 2, 3])], chart="h", bins=3)
    >>> 'data-chart="h"' in svg and svg.count('class="series"') == 2
    True
    """
    prepared = []
    for i, s in enumerate(samples):
        values = np.asarray(s.values, dtype=float)
        prepared.append((s.name, s.color or color(i), values[np.isfinite(values)]))
    pooled = np.concatenate([p[2] for p in prepared]) if prepared else np.empty(0)
    legend = [(name, col, "" if len(v) else "no data") for name, col, v in prepared]
    frame = _Frame(width, height, legend)
    if pooled.size == 0:
        return frame.render(chart, 0, [frame.empty(empty_text)], x_label, y_label)
    lo, hi = value_range if value_range is not None else (float(pooled.min()), float(pooled.max()))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    shares = []
    for name, col, values in prepared:
        if values.size:
            counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
            shares.append((name, col, counts / values.size))
    frame.scale_x(lo, hi, pad=False)
    frame.scale_y(0.0, max(float(s.max()) for _, _, s in shares), pad=True, zero=True)
    body, drawn = [], 0
    ex = frame.px(edges)
    for name, col, share in shares:
        # a closed step outline: up and across each bin, down to the axis at the end
        xs = np.concatenate([[ex[0]], np.repeat(ex, 2)[1:-1], [ex[-1]]])
        ys = np.concatenate([[frame.py(0.0)], np.repeat(frame.py(share), 2), [frame.py(0.0)]])
        label = escape(name)
        body.append(
            f'<path class="series" data-series="{label}" stroke="{col}" fill="{col}" fill-opacity="0.15" '
            f'stroke-width="1.5" d="{_path(xs, ys)}Z"><title>{label}</title></path>'
        )
        drawn += int(np.count_nonzero(share))
    return frame.render(chart, drawn, body, x_label, y_label)


def calibration_bins(predicted: npt.ArrayLike, observed: npt.ArrayLike, bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins of predicted probabilities, with the observed frequency of each; empty bins left out.

    Pairs where either value is missing are ignored; predictions are clipped to ``[0, 1]``.

    >>> [(b.count, b.observed) for b in calibration_bins([0.1, 0.15, 0.9, 1.0], [0, 1, 1, 1], bins=2)]
    [(2, 0.5), (2, 1.0)]
    """
    p, o = np.asarray(predicted, dtype=float), np.asarray(observed, dtype=float)
    keep = np.isfinite(p) & np.isfinite(o)
    p, o = np.clip(p[keep], 0.0, 1.0), o[keep]
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_o = np.bincount(index, weights=o, minlength=bins)
    return [
        CalibrationBin(_clean(k / bins), _clean((k + 1) / bins), float(sum_p[k] / n), float(sum_o[k] / n), int(n))
        for k, n in enumerate(counts)
        if n
    ]


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """The count-weighted mean gap between predicted and observed frequency (NaN without data).

    >>> round(expected_calibration_error(calibration_bins([0.1, 0.15, 0.9, 1.0], [0, 1, 1, 1], bins=2)), 4)
    0.2125
    """
    total = sum(b.count for b in bins)
    return sum(b.count * abs(b.predicted - b.observed) for b in bins) / total if total else math.nan


def reliability_diagram(
    bins: Sequence[CalibrationBin],
    *,
    chart: str,
    name: str = "",
    series_color: str | None = None,
    x_label: str = "predicted probability",
    y_label: str = "observed frequency",
    size: int = 340,
    empty_text: str = "no probabilities",
) -> str:
    """Predicted against observed frequency per bin, over the diagonal of perfect calibration.

    Each bin is a dot whose area grows with its count, which is also written next to it.

    >>> svg = reliability_diagram(calibration_bins([0.2, 0.8], [0, 1]), chart="cal", name="m")
    >>> 'data-points="2"' in svg and 'class="diagonal"' in svg
    True
    """
    col = series_color or color(0)
    # as much height as width for the plot box itself, so the diagonal is at 45 degrees
    height = size + MARGIN_TOP + MARGIN_BOTTOM - MARGIN_LEFT - MARGIN_RIGHT
    frame = _Frame(size, height, [(name, col, "" if bins else "no data")] if name else [])
    frame.scale_x(0.0, 1.0, pad=False)
    frame.scale_y(0.0, 1.0, pad=False)
    body = [
        f'<line class="diagonal" x1="{frame.px(0.0):.1f}" y1="{frame.py(0.0):.1f}" x2="{frame.px(1.0):.1f}" '
        f'y2="{frame.py(1.0):.1f}" stroke="{AXIS}" stroke-dasharray="5 4"/>'
    ]
    if not bins:
        body.append(frame.empty(empty_text))
        return frame.render(chart, 0, body, x_label, y_label)
    px = frame.px(np.array([b.predicted for b in bins]))
    py = frame.py(np.array([b.observed for b in bins]))
    body.append(f'<path class="series" stroke="{col}" fill="none" stroke-width="1.5" d="{_path(px, py)}"/>')
    biggest = max(b.count for b in bins)
    for b, x, y in zip(bins, px, py, strict=True):
        radius = 2.5 + 6.5 * math.sqrt(b.count / biggest)
        tip = escape(f"{b.lower:g} to {b.upper:g}: predicted {b.predicted:.3f}, observed {b.observed:.3f}, n={b.count}")
        body.append(
            f'<circle class="bin" data-count="{b.count}" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{col}" '
            f'fill-opacity="0.55" stroke="{col}"><title>{tip}</title></circle>'
        )
        # below the dot when it sits high, above it otherwise, so labels stay inside the plot
        dy = radius + 11 if y < frame.top + 20 else -(radius + 3)
        body.append(
            f'<text class="count" x="{x:.1f}" y="{y + dy:.1f}" text-anchor="middle" fill="{MUTED}" font-size="10">'
            f"{b.count}</text>"
        )
    return frame.render(chart, len(bins), body, x_label, y_label)


# ---------- internals ----------


def _step(lo: float, hi: float, count: int) -> float:
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * power * (1 + 1e-9):
            return m * power
    return 10 * power


def _clean(value: float) -> float:
    # 0.1 * 3 is 0.30000000000000004: round away float noise so equal inputs print equally
    return float(round(value, 12)) + 0.0


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))


class _Frame:
    """The plot box of one chart: scales, axes, grid, legend and the enclosing ``<svg>``."""

    def __init__(self, width: int, height: int, legend: list[tuple[str, str, str]]) -> None:
        self.width = width
        self.legend = legend
        self.legend_rows = self._layout_legend(width - MARGIN_LEFT - MARGIN_RIGHT)
        self.height = height + LEGEND_ROW * len(self.legend_rows)
        self.left, self.right = MARGIN_LEFT, width - MARGIN_RIGHT
        self.top, self.bottom = MARGIN_TOP, height - MARGIN_BOTTOM
        self.x_lo, self.x_hi, self.y_lo, self.y_hi = 0.0, 1.0, 0.0, 1.0
        self.x_ticks: list[float] = []
        self.y_ticks: list[float] = []
        self.x_step = self.y_step = 0.2

    def scale_x(self, lo: float, hi: float, pad: bool) -> None:
        self.x_lo, self.x_hi, self.x_ticks, self.x_step = self._scale(lo, hi, pad, zero=False, count=6)

    def scale_y(self, lo: float, hi: float, pad: bool, zero: bool = False) -> None:
        self.y_lo, self.y_hi, self.y_ticks, self.y_step = self._scale(lo, hi, pad, zero=zero, count=5)

    @staticmethod
    def _scale(lo: float, hi: float, pad: bool, zero: bool, count: int) -> tuple[float, float, list[float], float]:
        if not hi > lo:
            half = max(abs(lo) * 0.05, 0.5 if not pad else 0.01)
            lo, hi = lo - half, hi + half
        step = _step(lo, hi, count)
        if pad:
            # round the range out to whole ticks, so the top and bottom lines are labelled
            lo, hi = _clean(math.floor(lo / step + 1e-9) * step), _clean(math.ceil(hi / step - 1e-9) * step)
        if zero:
            lo = 0.0
        return lo, hi, nice_ticks(lo, hi, count), step

    def px(self, x: npt.ArrayLike) -> np.ndarray:
        return self.left + (np.asarray(x, dtype=float) - self.x_lo) / (self.x_hi - self.x_lo) * (self.right - self.left)

    def py(self, y: npt.ArrayLike) -> np.ndarray:
        return self.bottom - (np.asarray(y, dtype=float) - self.y_lo) / (self.y_hi - self.y_lo) * (
            self.bottom - self.top
        )

    def empty(self, text: str) -> str:
        x, y = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        return (
            f'<text class="empty" x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="{MUTED}" font-size="14" '
            f'font-style="italic">{escape(text)}</text>'
        )

    def _layout_legend(self, room: float) -> list[list[tuple[float, str, str, str]]]:
        rows: list[list[tuple[float, str, str, str]]] = []
        x = room  # forces a first row
        for name, col, note in self.legend:
            shown = name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"
            text = f"{shown} ({note})" if note else shown
            need = 24 + CHAR_W * len(text) + 16
            if x + need > room and (not rows or rows[-1]):
                rows.append([])
                x = 0.0
            rows[-1].append((x, col, text, name))
            x += need
        return rows

    def _axes(self, x_label: str, y_label: str) -> list[str]:
        out = []
        x_size = max((abs(t) for t in self.x_ticks), default=0.0)
        y_size = max((abs(t) for t in self.y_ticks), default=0.0)
        for t in self.y_ticks:
            y = float(self.py(t))
            out.append(
                f'<line class="grid" x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" stroke="{GRID}"/>'
            )
            out.append(
                f'<text class="tick" x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">'
                f"{format_number(t, self.y_step, y_size)}</text>"
            )
        for t in self.x_ticks:
            x = float(self.px(t))
            out.append(
                f'<line class="axis" x1="{x:.1f}" y1="{self.bottom}" x2="{x:.1f}" y2="{self.bottom + 4}" '
                f'stroke="{AXIS}"/>'
            )
            out.append(
                f'<text class="tick" x="{x:.1f}" y="{self.bottom + 16}" text-anchor="middle" fill="{MUTED}">'
                f"{format_number(t, self.x_step, x_size)}</text>"
            )
        out.append(
            f'<path class="axis" fill="none" stroke="{AXIS}" '
            f'd="M{self.left},{self.top}L{self.left},{self.bottom}L{self.right},{self.bottom}"/>'
        )
        if x_label:
            x = (self.left + self.right) / 2
            out.append(
                f'<text class="axis-label" x="{x:.1f}" y="{self.bottom + 34}" text-anchor="middle">'
                f"{escape(x_label)}</text>"
            )
        if y_label:
            y = (self.top + self.bottom) / 2
            out.append(
                f'<text class="axis-label" x="14" y="{y:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 14 {y:.1f})">{escape(y_label)}</text>'
            )
        return out

    def _legend(self) -> list[str]:
        out = []
        for r, row in enumerate(self.legend_rows):
            y = self.bottom + MARGIN_BOTTOM + LEGEND_ROW * r + 6
            for x0, col, text, name in row:
                x = self.left + x0
                out.append(
                    f'<g class="legend-item" data-series="{escape(name)}"><title>{escape(name)}</title>'
                    f'<rect x="{x:.1f}" y="{y - 4:.1f}" width="18" height="4" rx="2" fill="{col}"/>'
                    f'<text x="{x + 24:.1f}" y="{y + 1:.1f}">{escape(text)}</text></g>'
                )
        return out

    def render(self, chart: str, points: int, body: list[str], x_label: str, y_label: str) -> str:
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" data-chart="{escape(chart)}" data-points="{points}" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" role="img" '
            f'aria-label="{escape(chart)}" font-family="system-ui, sans-serif" font-size="12">',
            *self._axes(x_label, y_label),
            *body,
            *self._legend(),
            "</svg>",
        ]
        return "".join(parts)
